"""The HTML report's performance section (monitor/report/performance.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from detectors.performance import learn_performance
from detectors.profile import build_profile
from monitor.config.labels import KpiConfig
from monitor.config.model import MonitorConfig
from monitor.labels.decode import LabelBatch
from monitor.report import render_report
from monitor.runtime.replay import replay


def test_section_shows_realized_estimated_and_kpis(tmp_path) -> None:
    r = np.random.default_rng(0)
    n = 6000
    x = r.normal(0, 1, n)
    score = 1 / (1 + np.exp(-2 * x))
    y = (r.random(n) < score).astype(int)
    frame = pd.DataFrame({"x": x, "score": score})
    profile = build_profile(frame, prediction=["score"])
    profile = replace(profile, performance=learn_performance(profile, frame.assign(y=y), "y"))
    path = profile.save(tmp_path / "ref.json")
    table = tmp_path / "pred.csv"
    frame.head(2000).assign(request_id=[f"r{i}" for i in range(2000)]).to_csv(table, index=False)
    cfg = MonitorConfig.for_replay(reference=path, input_path=table, window_rows=1000)
    cfg = cfg.model_copy(update={"kpis": [KpiConfig(name="revenue")]})
    labels = LabelBatch.from_columns(
        [f"r{i}" for i in range(1500)], y[:1500].tolist(), kpis={"revenue": y[:1500] * 3.0}
    )
    reports = list(replay(cfg, profile, table, labels=labels))
    assert [rep.performance.labeled_rows for rep in reports if rep.performance] == [1000, 500]
    page = render_report(reports[1], profile, evidently=False)
    assert 'id="performance"' in page and 'href="#performance"' in page
    assert "500 of 1,000 predictions have a label" in page
    for metric in ("accuracy", "roc_auc", "log_loss", "ece"):
        assert f"<td>{metric}</td>" in page
    assert "cbpe" in page and "revenue" in page
    # a profile without labels: no section at all
    bare = replace(profile, performance=None)
    window = replace(reports[1], performance=None, reference_hash=bare.content_hash)
    plain = render_report(window, bare, evidently=False)
    assert 'id="performance"' not in plain
