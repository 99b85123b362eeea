"""monitor.yaml: loading, defaults, every error path's message, secrets, effective config."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from detectors.profile import build_profile
from detectors.schema import Schema
from detectors.settings import DEFAULT_QUALITY_THRESHOLDS, DEFAULT_THRESHOLDS, ColumnTest
from monitor.config.durations import format_duration, parse_duration
from monitor.config.errors import ConfigError
from monitor.config.loader import load_config, parse_config
from monitor.config.model import MonitorConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs" / "configuration.md"

BASE: dict[str, Any] = {
    "model": "fraud",
    "reference": "/profiles/fraud.json.gz",
    "source": {
        "kind": "kafka",
        "kafka": {"bootstrap_servers": "k0:9092", "topics": ["preds"], "group_id": "g"},
    },
}


def with_(patch: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """BASE with dotted keys set (a value of ... deletes the key)."""
    data = copy.deepcopy(BASE if base is None else base)
    for dotted, value in patch.items():
        *path, last = dotted.split(".")
        cur = data
        for part in path:
            cur = cur.setdefault(part, {})
        if value is ...:
            cur.pop(last, None)
        else:
            cur[last] = value
    return data


def error_of(data: dict[str, Any], source: str = "monitor.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        MonitorConfig.model_validate(data, source=source)
    return info.value


# -- loading -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["monitor.yaml", "kserve-monitor.yaml"])
def test_example_files_load(name: str) -> None:
    cfg = load_config(EXAMPLES / name)
    assert cfg.source.kind == "kafka" and cfg.source.kafka is not None
    # a relative reference is relative to the file's directory
    assert cfg.reference.parent == EXAMPLES
    assert cfg.reference.name.endswith(".profile.json.gz")


def test_driftline_example_values() -> None:
    cfg = load_config(EXAMPLES / "monitor.yaml")
    assert cfg.record.format == "driftline"
    assert cfg.windows.size == 300.0 and cfg.windows.slide == 60.0
    assert cfg.source.kafka.sasl_password_env == "KAFKA_PASSWORD"
    drift = cfg.drift.to_settings()
    assert drift.columns["country"] == ColumnTest(test="chi_square")
    assert drift.columns["amount"] == ColumnTest(test="psi", threshold=0.02)
    assert (drift.correction, drift.window_false_alarm_rate) == ("holm", 0.01)


def test_kserve_example_values() -> None:
    cfg = load_config(EXAMPLES / "kserve-monitor.yaml")
    assert cfg.record.format == "kserve_v2"
    assert cfg.record.kserve_input_columns[0] == "sepal_length"
    assert cfg.record.kserve_pair_ttl == 60.0


def test_defaults_fill_every_section() -> None:
    cfg = MonitorConfig.model_validate(BASE)
    assert cfg.windows.size == 60.0 and cfg.windows.rows is None
    assert cfg.windows.allowed_lateness == 10.0 and cfg.windows.idle_timeout == 30.0
    assert cfg.record.max_bytes == 1_048_576 and cfg.record.features_field == "features"
    assert cfg.schema_.infer_from_reference is True
    assert cfg.exporter.port == 9108 and cfg.state.checkpoint_interval == 5.0
    assert cfg.source.kafka.start == "earliest"
    assert cfg.source.kafka.max_batch_records == 5000


def test_paths_in_a_file_are_relative_to_it(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    data = with_(
        {
            "reference": "ref.json.gz",
            "reports.file": "out/reports.jsonl",
            "state.dir": "/abs/state",
        }
    )
    (sub / "m.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(sub / "m.yaml")
    assert cfg.reference == sub / "ref.json.gz"
    assert cfg.reports.file == sub / "out" / "reports.jsonl"
    assert cfg.state.dir == Path("/abs/state")


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: m\nsource:\n  kind: [kafka\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert re.search(r"line \d+, column \d+", str(info.value))
    assert "not valid YAML" in str(info.value)


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- model\n- reference\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path)


def test_an_empty_file_lists_the_required_keys(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    keys = [k for k, _ in err.problems]
    assert keys == ["model", "reference", "source"]
    assert all("is required; add" in msg for _, msg in err.problems)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_parse_config_reports_its_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_({"model": ""}), "values.yaml")
    assert str(info.value).startswith("values.yaml: model:")


# -- every error path: the key and the fix ----------------------------------------------

ERROR_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"windows.size": "sixty"}, "windows.size", "use a number of seconds or 500ms, 60s, 5m, 1h"),
    ({"windows.size": "5 minutes"}, "windows.size", "500ms, 60s, 5m, 1h"),
    ({"windows.size": -3}, "windows.size", "not a duration"),
    ({"windows.size": True}, "windows.size", "not a duration"),
    ({"windows.size": 0}, "windows.size", "must be longer than 0"),
    ({"windows.slide": "7s"}, "windows.slide", "does not divide size"),
    ({"windows.slide": "2m"}, "windows.slide", "at most size"),
    ({"windows.rows": 100, "windows.size": "1m"}, "windows.rows", "remove one"),
    ({"windows.rows": 100, "windows.slide": "10s"}, "windows.slide", "needs time windows"),
    ({"windows.rows": 0}, "windows.rows", "at least 1"),
    ({"windows.idle_timeout": "0s"}, "windows.idle_timeout", "longer than 0"),
    (
        {"windows.stable_version": "v1", "windows.segment_by_version": False},
        "windows.stable_version",
        "segment_by_version: true",
    ),
    ({"windows.dedupe_max_ids": "many"}, "windows.dedupe_max_ids", "write an integer"),
    ({"windows.dedupe": "perhaps"}, "windows.dedupe", "write true or false"),
    ({"source.kind": "kinesis"}, "source.kind", "use one of 'kafka' or 'file'"),
    ({"source.kafka": ...}, "source.kafka", "is required when kind is kafka"),
    ({"source.kind": "file"}, "source.file", "add path"),
    (
        {"source.kind": "file", "source.file": {"path": "data.txt"}},
        "source.file.format",
        "set format: jsonl, parquet or csv",
    ),
    ({"source.kafka.bootstrap_servers": "kafka"}, "source.kafka.bootstrap_servers", "host:port"),
    ({"source.kafka.topics": []}, "source.kafka.topics", "at least one topic"),
    ({"source.kafka.group_id": ...}, "source.kafka.group_id", "consumer group"),
    ({"source.kafka.start": "beginning"}, "source.kafka.start", "'earliest' or 'latest'"),
    (
        {"source.kafka.security_protocol": "SASL_SSL"},
        "source.kafka.sasl_username",
        "add the user name",
    ),
    (
        {"source.kafka.security_protocol": "SASL_SSL", "source.kafka.sasl_username": "u"},
        "source.kafka.sasl_password_env",
        "KAFKA_PASSWORD",
    ),
    (
        {"source.kafka.sasl_mechanism": "PLAIN"},
        "source.kafka.sasl_mechanism",
        "set security_protocol or remove sasl_mechanism",
    ),
    (
        {"source.kafka.ssl_cafile": "/ca.pem"},
        "source.kafka.ssl_cafile",
        "only used with security_protocol SSL",
    ),
    (
        {"source.kafka.heartbeat_interval_ms": 20000},
        "source.kafka.heartbeat_interval_ms",
        "below session_timeout_ms",
    ),
    ({"record.format": "avro"}, "record.format", "'driftline' or 'kserve_v2'"),
    ({"record.features_field": "a..b"}, "record.features_field", "joined by dots"),
    ({"record.max_bytes": 0}, "record.max_bytes", "at least 1"),
    (
        {"record.kserve_input_columns": ["a", "a"]},
        "record.kserve_input_columns",
        "list each column once",
    ),
    ({"schema.numeric": ["a"], "schema.categorical": ["a"]}, "schema.categorical", "keep one"),
    ({"schema.infer_from_reference": False}, "schema.infer_from_reference", "list numeric"),
    ({"drift.numeric_small": "chi_square"}, "drift.numeric_small", "use one of ks"),
    ({"drift.categorical_large": "jensen-shannon"}, "drift.categorical_large", "jensen_shannon"),
    ({"drift.thresholds": {"kss": 0.1}}, "drift.thresholds.kss", 'did you mean "ks"'),
    ({"drift.thresholds": {"ks": 5}}, "drift.thresholds.ks", "p-value threshold"),
    ({"drift.thresholds": {"psi": -1}}, "drift.thresholds.psi", "positive number"),
    ({"drift.columns": {"age": {"test": "kx"}}}, "drift.columns.age.test", "use one of"),
    ({"drift.columns": {"age": "wassersten"}}, "drift.columns.age.test", '"wasserstein"'),
    ({"drift.columns": {"age": {}}}, "drift.columns.age.test", "set test and/or threshold"),
    ({"drift.share_threshold": 1.5}, "drift.share_threshold", "(0, 1]"),
    ({"drift.correction": "sidak"}, "drift.correction", "'holm'"),
    ({"quality.thresholds": {"mising": 0.1}}, "quality.thresholds.mising", '"missing"'),
    ({"quality.columns": {"age": {"missing": 2}}}, "quality.columns.age.missing", "[0, 1]"),
    ({"exporter.port": 70000}, "exporter.port", "at most 65535"),
    ({"exporter.otlp_endpoint": "collector:4318"}, "exporter.otlp_endpoint", "http(s) URL"),
    ({"exporter.otlp_headers_env": "a b"}, "exporter.otlp_headers_env", "environment variable"),
    (
        {
            "reports.kafka_topic": "r",
            "source.kind": "file",
            "source.kafka": ...,
            "source.file": {"path": "x.jsonl"},
        },
        "reports.kafka_topic",
        "source.kafka",
    ),
    ({"state.checkpoint_interval": "0ms"}, "state.checkpoint_interval", "longer than 0"),
    ({"model": "  "}, "model", "name the model"),
    ({"reference": ...}, "reference", "driftline reference build"),
]


@pytest.mark.parametrize(("patch", "key", "hint"), ERROR_CASES, ids=[c[1] for c in ERROR_CASES])
def test_error_names_file_key_and_fix(patch: dict[str, Any], key: str, hint: str) -> None:
    err = error_of(with_(patch))
    assert err.key == key, str(err)
    first = str(err).splitlines()[0]
    assert first.startswith(f"monitor.yaml: {key}: "), first
    assert hint in str(err)


def test_the_documented_duration_message() -> None:
    err = error_of(with_({"windows.size": "sixty"}))
    assert str(err) == (
        'monitor.yaml: windows.size: "sixty" is not a duration; '
        "use a number of seconds or 500ms, 60s, 5m, 1h, 90d"
    )


def test_all_problems_are_reported_at_once() -> None:
    err = error_of(with_({"windows.size": "x", "exporter.port": "y", "drfit": {}}))
    keys = {k for k, _ in err.problems}
    assert keys == {"windows.size", "exporter.port", "drfit"}
    assert len(str(err).splitlines()) == 3


def test_slide_hint_divides_the_size() -> None:
    err = error_of(with_({"windows.size": "5m", "windows.slide": "45s"}))
    hint = re.search(r"use a slide such as (\S+)", str(err))
    assert hint is not None
    suggested = parse_duration(hint.group(1))
    assert (300 / suggested).is_integer()


def test_a_slide_that_divides_is_accepted() -> None:
    cfg = MonitorConfig.model_validate(with_({"windows.size": "1h", "windows.slide": "15m"}))
    assert (cfg.windows.size, cfg.windows.slide) == (3600.0, 900.0)


def test_rows_windows_without_size() -> None:
    cfg = MonitorConfig.model_validate(with_({"windows.rows": 500}))
    assert cfg.windows.rows == 500


# -- unknown keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "key", "suggestion"),
    [
        ({"drfit": {}}, "drfit", "drift"),
        ({"windows.sise": "1m"}, "windows.sise", "size"),
        ({"source.kafka.topic": "x"}, "source.kafka.topic", "topics"),
        ({"drift.columns": {"age": {"tset": "ks"}}}, "drift.columns.age.tset", "test"),
        ({"schemas": {}}, "schemas", "schema"),
    ],
)
def test_unknown_key_suggests_the_closest(patch: dict, key: str, suggestion: str) -> None:
    err = error_of(with_(patch))
    assert err.key == key
    assert f'did you mean "{suggestion}"?' in str(err)


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    err = error_of(with_({"windows.zzzzzz": 1}))
    assert "unknown key" in str(err) and "size, slide, rows" in str(err)


# -- secrets -----------------------------------------------------------------------------

SASL = {
    "source.kafka.security_protocol": "SASL_SSL",
    "source.kafka.sasl_mechanism": "SCRAM-SHA-512",
    "source.kafka.sasl_username": "svc",
    "source.kafka.sasl_password_env": "DL_TEST_KAFKA_PASSWORD",
}


def test_password_comes_from_the_named_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = MonitorConfig.model_validate(with_(SASL))
    monkeypatch.setenv("DL_TEST_KAFKA_PASSWORD", "s3cr3t-value")
    assert cfg.source.kafka.sasl_password() == "s3cr3t-value"
    # the config holds the name only, and never prints the secret
    assert "s3cr3t-value" not in cfg.model_dump_json()
    assert "s3cr3t-value" not in cfg.effective_yaml()
    assert "DL_TEST_KAFKA_PASSWORD" in cfg.effective_yaml()


def test_unset_password_env_var_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DL_TEST_KAFKA_PASSWORD", raising=False)
    cfg = MonitorConfig.model_validate(with_(SASL))
    with pytest.raises(ConfigError) as info:
        cfg.source.kafka.sasl_password()
    assert info.value.key == "source.kafka.sasl_password_env"
    assert "DL_TEST_KAFKA_PASSWORD" in str(info.value) and "not set" in str(info.value)


def test_a_password_written_in_the_file_is_refused() -> None:
    err = error_of(with_({**SASL, "source.kafka.sasl_password": "hunter2-in-clear"}))
    assert err.key == "source.kafka.sasl_password"
    assert "sasl_password_env" in str(err)
    assert "hunter2-in-clear" not in str(err)


def test_a_password_put_where_the_env_name_goes_is_not_echoed() -> None:
    err = error_of(with_({**SASL, "source.kafka.sasl_password_env": "p@ss w0rd!"}))
    assert err.key == "source.kafka.sasl_password_env"
    assert "p@ss w0rd!" not in str(err)
    assert "NAME of a variable" in str(err)


def test_otlp_headers_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = MonitorConfig.model_validate(
        with_({"exporter.otlp_endpoint": "https://otlp:4318", "exporter.otlp_headers_env": "H"})
    )
    monkeypatch.setenv("H", "authorization=Bearer abc, x-tenant = t1")
    assert cfg.exporter.otlp_headers() == {"authorization": "Bearer abc", "x-tenant": "t1"}
    monkeypatch.setenv("H", "no-equals-sign")
    with pytest.raises(ConfigError, match="key=value"):
        cfg.exporter.otlp_headers()
    assert "Bearer" not in cfg.effective_yaml()


def test_user_info_in_the_otlp_url_is_masked() -> None:
    cfg = MonitorConfig.model_validate(
        with_({"exporter.otlp_endpoint": "https://user:pw-in-url@otlp.example:4318/v1"})
    )
    text = cfg.effective_yaml()
    assert "pw-in-url" not in text and "***@otlp.example:4318/v1" in text


# -- effective configuration -------------------------------------------------------------


def test_effective_yaml_has_every_default_and_loads_back(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLES / "monitor.yaml")
    text = cfg.effective_yaml()
    data = yaml.safe_load(text)
    assert set(data) == {
        "model",
        "reference",
        "source",
        "record",
        "schema",
        "windows",
        "drift",
        "quality",
        "exporter",
        "reports",
        "state",
        "aggregation",
        "labels",
        "kpis",
        "explain",
        "multivariate",
        "alerts",
        "policies",
        "actions",
        "audit",
    }
    assert data["windows"]["size"] == "5m"  # durations as people write them
    assert data["windows"]["allowed_lateness"] == "30s"
    assert data["source"]["kafka"]["session_timeout_ms"] == 10000  # a default
    path = tmp_path / "effective.yaml"
    path.write_text(text)
    again = load_config(path)
    assert again.model_dump() == cfg.model_dump()


def test_every_key_is_documented() -> None:
    text = DOCS.read_text()

    def walk(model: type[BaseModel]) -> list[str]:
        keys = []
        for name, info in model.model_fields.items():
            key = info.alias or name
            keys.append(key)
            ann = info.annotation
            for candidate in (ann, *getattr(ann, "__args__", ())):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    keys += walk(candidate)
        return keys

    missing = [k for k in walk(MonitorConfig) if f"| `{k}` |" not in text]
    assert not missing, f"undocumented keys: {missing}"


# -- settings and the profile ------------------------------------------------------------


def test_to_settings_merges_thresholds_with_the_defaults() -> None:
    cfg = MonitorConfig.model_validate(
        with_(
            {
                "drift.thresholds": {"psi": 0.3},
                "drift.columns": {"age": {"threshold": 0.01}},
                "drift.exact": "never",
                "quality.thresholds": {"missing": 0.2},
                "quality.columns": {"age": {"out_of_range": 0.5}},
                "quality.min_rows": 50,
            }
        )
    )
    drift = cfg.drift.to_settings()
    assert drift.thresholds == {**DEFAULT_THRESHOLDS, "psi": 0.3}
    assert drift.columns == {"age": ColumnTest(test=None, threshold=0.01)}
    assert drift.exact == "never"
    quality = cfg.quality.to_settings()
    assert quality.thresholds == {**DEFAULT_QUALITY_THRESHOLDS, "missing": 0.2}
    assert quality.threshold("age", "out_of_range") == 0.5
    assert quality.threshold("other", "missing") == 0.2
    assert quality.min_rows == 50


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 300),
            "country": rng.choice(["DE", "FR", "US"], 300),
            "score": rng.random(300),
        }
    )
    return build_profile(frame, Schema.build(["age"], ["country"], ["score"]))


def test_columns_and_tests_that_fit_the_profile_pass(profile) -> None:
    cfg = MonitorConfig.model_validate(
        with_(
            {
                "drift.columns": {"age": "ks", "country": {"test": "chi_square"}},
                "quality.columns": {"country": {"unseen": 0.1}, "age": {"out_of_range": 0.1}},
                "schema.numeric": ["age"],
                "schema.prediction": ["score"],
            }
        )
    )
    cfg.check_against_profile(profile)


@pytest.mark.parametrize(
    ("patch", "key", "hint"),
    [
        ({"drift.columns": {"agee": "ks"}}, "drift.columns.agee", 'did you mean "age"'),
        ({"drift.columns": {"age": "chi_square"}}, "drift.columns.age.test", "numeric column"),
        ({"drift.columns": {"country": "ks"}}, "drift.columns.country.test", "use one of"),
        ({"quality.columns": {"age": {"unseen": 0.1}}}, "quality.columns.age.unseen", "remove"),
        (
            {"quality.columns": {"country": {"out_of_range": 0.1}}},
            "quality.columns.country.out_of_range",
            "categorical column",
        ),
        ({"schema.numeric": ["country"]}, "schema.numeric", "categorical in the reference"),
        ({"schema.prediction": ["age"]}, "schema.prediction", "is a feature"),
        ({"record.kserve_input_columns": ["x"]}, "record.kserve_input_columns", "its columns"),
    ],
)
def test_profile_checks_name_the_key(profile, patch: dict, key: str, hint: str) -> None:
    cfg = MonitorConfig.model_validate(with_(patch))
    with pytest.raises(ConfigError) as info:
        cfg.check_against_profile(profile)
    assert info.value.key == key, str(info.value)
    assert hint in str(info.value)


def test_profile_problems_name_the_config_file(profile, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(with_({"drift.columns": {"nope": "ks"}})))
    cfg = load_config(path)
    with pytest.raises(ConfigError) as info:
        cfg.check_against_profile(profile)
    assert str(info.value).startswith(f"{path} (against /profiles/fraud.json.gz): ")
    assert "drift.columns.nope" in str(info.value) and "age, country, score" in str(info.value)


def test_check_files_names_missing_files(tmp_path: Path) -> None:
    cfg = MonitorConfig.model_validate(with_({"reference": str(tmp_path / "nope.json.gz")}))
    with pytest.raises(ConfigError) as info:
        cfg.check_files()
    assert info.value.key == "reference" and "driftline reference build" in str(info.value)


# -- replay without a file ---------------------------------------------------------------


def test_for_replay_counts_rows_without_a_time_column(tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("age,country\n1,DE\n")
    cfg = MonitorConfig.for_replay(tmp_path / "ref.json.gz", data)
    assert cfg.source.kind == "file" and cfg.source.file.resolved_format() == "csv"
    assert cfg.record.features_field == ""  # flat records: the columns are the features
    assert cfg.windows.rows == 1000


def test_for_replay_uses_time_windows_with_a_time_column(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"timestamp": 1700000000, "age": 3}\n')
    cfg = MonitorConfig.for_replay(tmp_path / "ref.json.gz", data, window_size="5m")
    assert cfg.windows.rows is None and cfg.windows.size == 300.0
    rows = MonitorConfig.for_replay(tmp_path / "ref.json.gz", data, window_rows=50)
    assert rows.windows.rows == 50


# -- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("60s", 60.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 2m ", 120.0),
        (90, 90.0),
        (0.25, 0.25),
        ("45", 45.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["sixty", "5 min", "1w", "-1s", "", None, False, [1], math.inf])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a duration; use a number of seconds"):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_round_trips_whole_milliseconds(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-12)


def test_window_false_alarm_rate_reaches_the_drift_settings() -> None:
    base = {
        "model": "m",
        "reference": "ref.json",
        "source": {"kind": "file", "file": {"path": "x.jsonl"}},
    }
    settings = MonitorConfig.model_validate(base).drift.to_settings()
    assert (settings.window_false_alarm_rate, settings.correction) == (0.01, "holm")
    set_ = MonitorConfig.model_validate({**base, "drift": {"window_false_alarm_rate": 0.001}})
    assert set_.drift.to_settings().window_false_alarm_rate == 0.001
    for bad in (0, 1, 2):
        with pytest.raises(ConfigError, match="window_false_alarm_rate"):
            MonitorConfig.model_validate({**base, "drift": {"window_false_alarm_rate": bad}})
    # the key it replaced names its replacement
    with pytest.raises(ConfigError, match=r"noise_floor_alpha.*window_false_alarm_rate"):
        MonitorConfig.model_validate({**base, "drift": {"noise_floor_alpha": 0.001}})
