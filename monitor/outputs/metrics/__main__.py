"""``python -m monitor.outputs.metrics``: print or refresh the metrics reference table."""

from monitor.outputs.metrics import main

raise SystemExit(main())
