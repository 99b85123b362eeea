"""What `driftline demo` concludes from its windows, without running one: only changes the
run injected are looked for, and windows before the first change must be clean."""

from __future__ import annotations

import io

from rich.console import Console

from detectors.results import DriftResult, QualityCheck, QualityResult, TestResult, WindowReport
from monitor.demo import synthetic
from monitor.demo.live import DemoState, conclude

T0 = 1_700_000_000.0


def window(start: float, *, drifted: str | None = None, missing: str | None = None) -> WindowReport:
    columns = tuple(
        TestResult(f, "psi", 0.5 if f == drifted else 0.01, None, 0.2, f == drifted)
        for f in ("income", "country", "balance")
    )
    share = sum(c.drifted for c in columns) / len(columns)
    checks = (
        QualityCheck("balance", "missing", 0.4 if missing else 0.0, 0.0, 0.05, bool(missing), 0),
    )
    return WindowReport(
        model="credit",
        model_version="v1",
        window_start=T0 + start,
        window_end=T0 + start + 5.0,
        reference_hash="abc",
        rows=10_000,
        drift=DriftResult(share, int(share * 3), 3, 0.5, False, "none", columns),
        prediction_drift=DriftResult(0.0, 0, 0, 0.5, False, "none", ()),
        quality=QualityResult(rows=10_000, checks=checks),
        evaluated_at=T0 + start + 7.0,
    )


def summary(state: DemoState, duration: float) -> tuple[int, str]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    code = conclude(state, synthetic.DEFAULT_SCHEDULE, duration, 5.0, console)
    return code, out.getvalue()


def test_a_short_run_does_not_look_for_changes_it_never_injected() -> None:
    # 30 s: the income shift (+20 s) happened, the country (+40 s) and balance (+60 s) did not
    reports = [window(s) for s in (0.0, 5.0, 10.0, 15.0)] + [window(20.0, drifted="income")]
    code, text = summary(DemoState(started=T0, reports=reports), 30.0)
    assert code == 0, text
    assert "not found" not in text
    assert "income mean" in text
    assert "not injected in a 30 s run" in text and "new country" in text
    assert "4 windows before the first change, all clean" in text


def test_a_change_that_was_injected_and_missed_is_not_found() -> None:
    reports = [window(s) for s in (0.0, 5.0, 10.0, 15.0, 20.0)]
    code, text = summary(DemoState(started=T0, reports=reports), 30.0)
    assert code == 1 and "not found" in text


def test_an_alarm_before_the_first_change_fails_the_demo() -> None:
    reports = [window(0.0), window(5.0, missing="balance"), window(20.0, drifted="income")]
    code, text = summary(DemoState(started=T0, reports=reports), 30.0)
    assert code == 1
    assert "1 with a false alarm" in text
    reports = [window(0.0), window(5.0, drifted="country"), window(20.0, drifted="income")]
    code, text = summary(DemoState(started=T0, reports=reports), 30.0)
    assert code == 1 and "1 with a false alarm" in text  # one drifted column is an alarm
