"""The agent's running path imports only what it needs (docs/architecture.md, "Imports on
the agent's path"): a fresh interpreter does what ``driftline run`` does with a default
configuration (the command's modules, the config, the agent, records decoded into
windows, the windows evaluated and their reports published) and none of the heavy
libraries of the features that are off may be loaded. Each of them costs a sidecar tens
of MiB (docs/benchmarks.md, "Footprint")."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from detectors.profile import build_profile
from tests.conftest import make_reference

ROOT = Path(__file__).resolve().parents[2]

# Libraries the default agent must not load: pandas and pyarrow (reference building, the
# HTML report), scipy.stats and its submodules (scipy.special is enough), the report's,
# explanations' and multivariate tests' stacks, OpenTelemetry without an endpoint, and
# librdkafka's client when aiokafka is the client.
HEAVY = (
    "pandas",
    "pyarrow",
    "scipy.stats",
    "scipy.sparse",
    "scipy.optimize",
    "scipy.linalg",
    "scipy.interpolate",
    "evidently",
    "shap",
    "torch",
    "sklearn",
    "xgboost",
    "lightgbm",
    "opentelemetry",
    "confluent_kafka",
    "monitor.report.html",
    "monitor.explain.explainers",
    "monitor.runtime.multivariate",
)

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import monitor.cli  # the `driftline` entry point
    from monitor.config.loader import load_config  # what `driftline run` imports
    from monitor.runtime.aggregator import run  # noqa: F401
    from monitor.runtime.agent import Agent
    from monitor.ingest.batch import RawMessage

    config = load_config(sys.argv[1])
    agent = Agent(config, serve_http=False)
    lines = open(sys.argv[2], "rb").read().splitlines()
    messages = [RawMessage(value=v, offset=i) for i, v in enumerate(lines)]
    closed = agent.pipeline.ingest_messages(messages, now=time.time())
    closed += agent.pipeline.flush()
    results = agent._evaluate_closed(closed)
    for result in results:
        agent._publish(result)
    print(json.dumps({
        "windows": len(results),
        "rows": sum(r.report.rows for r in results),
        "modules": sorted(sys.modules),
    }))
    """
)


def _records(path: Path, n: int) -> None:
    frame = make_reference(n, seed=5)
    with path.open("w") as f:
        for i, row in enumerate(frame.to_dict(orient="records")):
            features = {
                k: (None if isinstance(v, float) and v != v else v)
                for k, v in row.items()
                if k != "prediction"
            }
            record = {
                "request_id": f"r{i}",
                "timestamp": 1_700_000_000.0 + i * 0.01,
                "model_version": "v1",
                "features": features,
                "prediction": row["prediction"],
            }
            f.write(json.dumps(record) + "\n")


def test_the_default_agents_path_loads_no_heavy_library(tmp_path: Path) -> None:
    profile = build_profile(make_reference(2000)).save(tmp_path / "ref.json")
    config = {
        "model": "m",
        "reference": str(profile),
        "source": {
            "kind": "kafka",
            "kafka": {"bootstrap_servers": "127.0.0.1:9", "topics": ["t"], "group_id": "g"},
        },
        "windows": {"size": 5.0},
        "reports": {"log": False, "file": str(tmp_path / "reports.jsonl")},
        "state": {"dir": str(tmp_path / "state")},
    }
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))
    _records(tmp_path / "records.jsonl", 3000)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tmp_path / "monitor.yaml"),
            str(tmp_path / "records.jsonl"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # the path was really walked: windows closed, were tested and reported
    assert seen["windows"] >= 2 and seen["rows"] == 3000
    assert len((tmp_path / "reports.jsonl").read_text().splitlines()) == seen["windows"]
    modules = set(seen["modules"])
    assert "detectors.evaluate" in modules and "aiokafka" in modules
    loaded = sorted(m for m in HEAVY if m in modules)
    assert not loaded, f"the default agent's path loaded {loaded}"
