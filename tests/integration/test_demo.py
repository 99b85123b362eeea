"""`driftline demo`, compressed: embedded broker, drifting synthetic model, agent.

The demo's schedule is squeezed into 25 seconds (a change every 6 s, 3-second windows);
it returns 0 only when the agent found every injected change in a window after it and
raised no alarm in the windows before the first change.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from monitor.demo import synthetic
from monitor.demo.live import alarm, clean_before, conclude, play

pytestmark = pytest.mark.integration

SCHEDULE = (
    synthetic.Drift(6.0, "mean_shift", "income", "income mean +0.8 std"),
    synthetic.Drift(12.0, "new_category", "country", "new country 'PL' in 30% of requests"),
    synthetic.Drift(18.0, "missing_spike", "balance", "balance missing in 40% of requests"),
)


def test_compressed_demo_finds_every_injected_drift_and_nothing_before() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=160)
    state = play(
        duration=25.0, rate=1000, port=0, window_seconds=3.0, schedule=SCHEDULE, console=console
    )
    code = conclude(state, SCHEDULE, 25.0, 3.0, console)
    text = out.getvalue()
    # the windows before the first change are clean: no drift, no quality breach
    before, alarms = clean_before(state, SCHEDULE)
    assert before >= 1, text
    early = [r for r in state.reports if r.window_end <= state.started + SCHEDULE[0].at]
    assert len(early) == before
    for r in early:
        assert not r.drifted and not r.quality.breached, r.to_dict()
        assert not any(c.drifted for c in (*r.drift.columns, *r.prediction_drift.columns))
        assert not alarm(r)
    assert alarms == 0
    assert code == 0, text
    assert "what the agent found" in text
    assert "not found" not in text
    for drift in SCHEDULE:
        assert drift.description in text
