"""The ``multivariate`` block of a WindowReport as metric values (monitor/outputs/metrics/
defines the families). Kept apart from the exporter so the block's shape is read in one
place."""

from __future__ import annotations

from collections.abc import Callable

from detectors.results import WindowReport
from monitor.outputs import metrics as m


def put_multivariate(put: Callable[..., None], report: WindowReport) -> None:
    """Per-test statistic and p-value (``detector`` = test name) and the combined verdict.

    A window without a result (disabled or skipped) puts nothing, so its series go away
    rather than keep the previous window's values.
    """
    block = report.multivariate
    if block is None:
        return
    tests = block.tests or ()
    if tests:
        for t in tests:
            put(m.MULTIVARIATE_STATISTIC, t.statistic, detector=t.test)
            put(m.MULTIVARIATE_P_VALUE, t.p_value, detector=t.test)
    else:
        put(m.MULTIVARIATE_STATISTIC, block.statistic, detector=block.test)
        put(m.MULTIVARIATE_P_VALUE, block.p_value, detector=block.test)
    put(m.MULTIVARIATE_DRIFTED, float(block.drifted))
