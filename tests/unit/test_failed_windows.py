"""A window whose evaluation raises is counted, kept on disk before its offsets can be
committed, retried with back-off (also after a restart), and given up only after the last
attempt, with its sketch left for an operator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from detectors.profile import build_profile
from detectors.sketch import WindowSketch
from monitor.outputs import metrics as m
from monitor.runtime.failed_windows import FailedWindows
from monitor.runtime.panes import ClosedWindow
from tests.conftest import make_reference
from tests.unit.test_agent_checkpoint import RecordingSource, make_agent


def closed_window(profile, start: float = 1_700_000_000.0, version: str = "v1.2") -> ClosedWindow:
    sketch = WindowSketch(profile)
    sketch.update(make_reference(200, seed=3))
    return ClosedWindow(
        model_version=version,
        start=start,
        end=start + 60.0,
        sketch=sketch,
        rows=sketch.rows,
        late=1,
        duplicates=2,
        traceparents=[],
        kind="time",
    )


def test_kept_retried_with_back_off_then_given_up(tmp_path: Path) -> None:
    profile = build_profile(make_reference(500))
    store = FailedWindows(tmp_path, profile, backoff=(5.0, 30.0))
    w = closed_window(profile)
    assert store.keep([w], RuntimeError("boom"), now=100.0) == 0
    sketches = list(tmp_path.glob("*.sketch"))
    assert len(sketches) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    assert store.due(104.0) == []
    assert store.due(105.0) == [w]
    assert store.due(105.0) == []  # handed out once per attempt
    assert store.keep([w], RuntimeError("again"), now=105.0) == 0
    assert store.due(134.0) == [] and store.due(135.0) == [w]
    assert store.keep([w], RuntimeError("third"), now=135.0) == 1  # out of attempts
    assert store.due(10_000.0) == [] and store.pending == 0
    # the sketch stays for an operator, and reads back as the same window
    kept = WindowSketch.from_bytes(profile, sketches[0].read_bytes())
    assert kept.rows == w.sketch.rows
    np.testing.assert_array_equal(kept.num_counts, w.sketch.num_counts)


def test_a_successful_retry_removes_the_files(tmp_path: Path) -> None:
    profile = build_profile(make_reference(500))
    store = FailedWindows(tmp_path, profile)
    w = closed_window(profile)
    store.keep([w], ValueError("x"), now=0.0)
    store.succeeded(w)
    assert list(tmp_path.iterdir()) == [] and store.windows == {}


def test_versions_that_differ_only_in_unsafe_characters_do_not_share_files(
    tmp_path: Path,
) -> None:
    profile = build_profile(make_reference(500))
    store = FailedWindows(tmp_path, profile)
    store.keep([closed_window(profile, version="v1.2"), closed_window(profile, version="v1_2")],
               ValueError("x"), now=0.0)  # fmt: skip
    assert len(list(tmp_path.glob("*.sketch"))) == 2


def test_a_restarted_agent_retries_what_the_last_run_kept(tmp_path: Path) -> None:
    profile = build_profile(make_reference(500))
    FailedWindows(tmp_path, profile).keep([closed_window(profile)], KeyError("k"), now=0.0)
    again = FailedWindows(tmp_path, profile)
    assert again.load(now=50.0) == 1
    (w,) = again.due(50.0)
    assert (w.model_version, w.start, w.rows, w.late, w.duplicates) == (
        "v1.2",
        1_700_000_000.0,
        200,
        1,
        2,
    )
    # another reference's failed windows are not this agent's to retry
    other = build_profile(make_reference(400, seed=9))
    assert FailedWindows(tmp_path, other).load(now=50.0) == 0


def _counter(agent, outcome: str) -> float:
    value = agent.exporter.registry.get_sample_value(
        m.WINDOW_EVALUATIONS_FAILED.name,
        {"model": "m", "window": agent.exporter.window_label, "outcome": outcome},
    )
    return value or 0.0


def test_the_agent_counts_keeps_and_retries_a_failed_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent(tmp_path)
    agent.source = RecordingSource()  # type: ignore[assignment]
    w = closed_window(agent.profile)
    real = agent.pipeline.evaluator.evaluate

    def broken(closed):
        raise FloatingPointError("evaluation bug")

    monkeypatch.setattr(agent.pipeline.evaluator, "evaluate", broken)

    async def fail_then_checkpoint() -> None:
        agent._submit([w])
        await agent.checkpoint()  # drains the evaluation first: the window is on disk

    asyncio.run(fail_then_checkpoint())
    kept_dir = tmp_path / "state" / "failed-windows"
    assert len(list(kept_dir.glob("*.sketch"))) == 1
    assert _counter(agent, "retry") == 1.0
    assert agent.latest == {}

    monkeypatch.setattr(agent.pipeline.evaluator, "evaluate", real)

    async def retry() -> None:
        agent._submit(agent.failed.due(1e12), retry=True)
        await agent.drain()

    asyncio.run(retry())
    assert agent.latest["v1.2"].rows == 200  # the window's report went out after all
    assert list(kept_dir.glob("*.sketch")) == []
    agent.executor.shutdown()


def test_a_window_kept_after_a_restart_keeps_its_performance_state(tmp_path: Path) -> None:
    from dataclasses import replace

    import pandas as pd

    from detectors.performance import PerformanceState, learn_performance
    from detectors.performance.state import realize

    r = np.random.default_rng(4)
    x = r.normal(0, 1, 2000)
    frame = pd.DataFrame({"x": x, "score": 1 / (1 + np.exp(-2 * x))})
    y = (r.random(2000) < frame["score"]).astype(int)
    profile = build_profile(frame, prediction=["score"])
    profile = replace(profile, performance=learn_performance(profile, frame.assign(y=y), "y"))
    ref = profile.performance
    assert ref is not None
    state = PerformanceState(ref)
    cols = {c: frame[c].to_numpy() for c in frame.columns}
    preds = ref.predictions(cols)
    state.add_predictions(preds, cols)
    state.add_labels(np.arange(2000, dtype=np.uint64), preds, y.to_numpy())
    w = closed_window(profile)
    w.performance = state
    FailedWindows(tmp_path, profile).keep([w], KeyError("k"), now=0.0)
    again = FailedWindows(tmp_path, profile)
    assert again.load(now=50.0) == 1
    (back,) = again.due(50.0)
    assert isinstance(back.performance, PerformanceState)
    assert [m.value for m in realize(ref, back.performance)] == [
        m.value for m in realize(ref, state)
    ]
