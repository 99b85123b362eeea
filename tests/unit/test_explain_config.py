"""``explain:`` in monitor.yaml (monitor/config/explain.py): defaults, validation messages
that name the key and the fix, paths relative to the file, the settings it gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from detectors.profile import build_profile
from monitor.config.errors import ConfigError
from monitor.config.loader import load_config
from monitor.config.model import MonitorConfig

BASE: dict[str, Any] = {
    "model": "fraud",
    "reference": "/profiles/fraud.json.gz",
    "source": {
        "kind": "kafka",
        "kafka": {"bootstrap_servers": "k0:9092", "topics": ["preds"], "group_id": "g"},
    },
}


def _error(explain: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        MonitorConfig.model_validate({**BASE, "explain": explain}, source="monitor.yaml")
    return str(info.value)


def test_off_by_default_and_settings_carry_every_key() -> None:
    cfg = MonitorConfig.model_validate(BASE)
    assert not cfg.explain.enabled
    cfg = MonitorConfig.model_validate(
        {
            **BASE,
            "explain": {
                "model": "/models/m.json",
                "budget_seconds": 0.5,
                "ndcg_threshold": 0.8,
                "min_share": 0.1,
                "features": ["a", "b"],
                "trusted_types": ["x.Y"],
            },
        }
    )
    s = cfg.explain.to_settings()
    assert s.model == "/models/m.json" and s.budget_seconds == 0.5
    assert s.features == ("a", "b") and s.trusted_types == ("x.Y",)
    assert s.attribution.ndcg_threshold == 0.8 and s.attribution.min_share == 0.1
    assert "explain:" in cfg.effective_yaml()


@pytest.mark.parametrize(
    ("explain", "expected"),
    [
        ({"explainer": "deep"}, r"explain\.explainer"),
        ({"device": "tpu"}, r"explain\.device"),
        ({"budget_seconds": 0}, r"explain\.budget_seconds"),
        ({"ndcg_threshold": 1.5}, r"explain\.ndcg_threshold"),
        ({"min_rows": 100, "max_rows": 50}, r"explain\.max_rows.*below min_rows"),
        ({"format": "joblib"}, r"explain\.format.*trust_pickle: true"),
        ({"trust_pickel": True}, r"explain\.trust_pickel"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(explain: dict[str, Any], expected: str) -> None:
    import re

    message = _error(explain)
    assert message.startswith("monitor.yaml")
    assert re.search(expected, message), message


def test_model_path_is_relative_to_the_file_and_checked(tmp_path: Path) -> None:
    (tmp_path / "monitor.yaml").write_text(
        "model: fraud\nreference: ref.json\nsource:\n  kind: kafka\n  kafka:\n"
        "    bootstrap_servers: k:9092\n    topics: [p]\n    group_id: g\n"
        "explain:\n  model: models/m.json\n"
    )
    cfg = load_config(tmp_path / "monitor.yaml")
    assert cfg.explain.model == tmp_path / "models" / "m.json"
    with pytest.raises(ConfigError) as info:
        cfg.check_files()
    assert "explain.model" in str(info.value) and "--model" in str(info.value)


def test_explain_features_must_be_profile_columns() -> None:
    profile = build_profile(pd.DataFrame({"age": [1.0, 2.0, 3.0], "score": [0.1, 0.2, 0.3]}))
    cfg = MonitorConfig.model_validate({**BASE, "explain": {"features": ["age", "agee"]}})
    with pytest.raises(ConfigError) as info:
        cfg.check_against_profile(profile)
    assert "explain.features" in str(info.value) and 'did you mean "age"' in str(info.value)
