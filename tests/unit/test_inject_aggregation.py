"""The injector's ``driftline.io/aggregation``: the sidecars of one model's replicas elect
one judge (``aggregation.role: both``, the default) or each judges its own partitions
(``none``); any other value refuses the injection with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.config.loader import parse_config
from monitor.inject.names import ANNOTATION_AGGREGATION, ANNOTATION_ERROR, STATE_DIR
from monitor.inject.settings import InjectorSettings, SettingsError, load_settings
from tests.unit.test_inject import (
    SETTINGS,
    annotated,
    generated_config,
    model_pod,
    patched,
    review,
    validate_pod,
)


def _config(annotations: dict[str, str], settings: InjectorSettings = SETTINGS) -> dict[str, Any]:
    pod = model_pod(annotations)
    result = patched(pod, review(pod, settings=settings))
    validate_pod(result)
    return generated_config(result)


def test_sidecars_of_a_model_elect_one_judge_by_default() -> None:
    assert SETTINGS.aggregation == "both"
    data = _config(annotated())
    assert data["aggregation"] == {"role": "both"}
    cfg = parse_config(data)
    assert cfg.aggregation.publishes and cfg.aggregation.aggregates
    # Every replica's sidecar gets the same configuration: one source group, one partials
    # topic and one aggregator group (<group>-aggregator) for the model; each generates
    # its own agent id and keeps its aggregator state in its own volume.
    assert data == _config(annotated())
    assert cfg.source.kafka is not None and cfg.source.kafka.group_id == "driftline-fraud-scorer"
    assert cfg.aggregation.group_id is None and cfg.aggregation.agent_id is None
    assert cfg.aggregation.topic(cfg.model) == "driftline.fraud-scorer.partials"
    assert str(cfg.state.dir) == STATE_DIR


@pytest.mark.parametrize("value", ["none", " None "])
def test_annotation_none_keeps_one_verdict_per_sidecar(value: str) -> None:
    data = _config(annotated(**{ANNOTATION_AGGREGATION: value}))
    assert "aggregation" not in data
    assert parse_config(data).aggregation.role == "none"


def test_annotation_overrides_the_injector_setting_and_the_setting_is_the_default() -> None:
    lone = SETTINGS.model_copy(update={"aggregation": "none"})
    assert "aggregation" not in _config(annotated(), settings=lone)
    data = _config(annotated(**{ANNOTATION_AGGREGATION: "both"}), settings=lone)
    assert parse_config(data).aggregation.role == "both"


@pytest.mark.parametrize("value", ["agent", "aggregator", "true", ""])
def test_other_values_refuse_injection_with_the_reason(value: str) -> None:
    pod = model_pod(annotated(**{ANNOTATION_AGGREGATION: value}))
    ignore = review(pod)
    (warning,) = ignore["warnings"]
    assert "not injected" in warning and ANNOTATION_AGGREGATION in warning
    assert '"both" nor "none"' in warning
    result = patched(pod, ignore)
    assert result["spec"] == pod["spec"]
    assert ANNOTATION_AGGREGATION in result["metadata"]["annotations"][ANNOTATION_ERROR]

    fail = review(pod, settings=SETTINGS.model_copy(update={"failure_policy": "Fail"}))
    assert fail["allowed"] is False and "patch" not in fail
    assert ANNOTATION_AGGREGATION in fail["status"]["message"]


def test_annotation_is_ignored_next_to_a_configmap() -> None:
    pod = model_pod(
        {
            "driftline.io/inject": "true",
            "driftline.io/config": "fraud-scorer-driftline",
            ANNOTATION_AGGREGATION: "none",
        }
    )
    response = review(pod)
    (warning,) = response["warnings"]
    assert ANNOTATION_AGGREGATION in warning and "ignored" in warning
    assert response["patch"]


def test_settings_file_names_a_bad_aggregation(tmp_path: Path) -> None:
    path = tmp_path / "injector.yaml"
    path.write_text("aggregation: none\n")
    assert load_settings(path).aggregation == "none"
    assert load_settings(None).aggregation == "both"
    path.write_text("aggregation: agent\n")
    with pytest.raises(SettingsError, match=r"injector\.yaml: aggregation"):
        load_settings(path)
