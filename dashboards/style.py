"""How the dashboards look, in one place: Grafana unit ids, the colours of thresholds and
value mappings, and the visual thresholds (the defaults of the matching alerts and
detectors), so every panel of every dashboard agrees on them."""

from __future__ import annotations

# Units (Grafana unit ids).
RATIO = "percentunit"
SECONDS = "s"
BYTES = "bytes"
COUNT = "short"
RECORDS = "records"
RECORDS_PER_SECOND = "suffix: records/s"
PER_SECOND = "suffix: /s"
CPU_CORES = "suffix: cores"

# Colours of thresholds and value mappings.
GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"

# Visual thresholds, the defaults of the matching alerts (alert_rules/thresholds.yaml) and
# of the detectors (detectors/settings.py); the verdict and alert panels are the authority.
SHARE_THRESHOLD = 0.5  # DriftSettings.share_threshold
LAG_WARN, LAG_ALERT = 1000, 10000  # pipeline.consumer_lag_records
WINDOW_AGE_WARN, WINDOW_AGE_ALERT = 120, 180  # 3 windows of 60s: pipeline.stalled_windows
CHECKPOINT_AGE_ALERT = 300  # pipeline.checkpoint_stale_after
EVALUATION_ALERT = 30.0  # pipeline.evaluation_seconds
LATE_SHARE = 0.05  # pipeline.late_record_ratio
