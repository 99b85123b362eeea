"""Only the member of a model's aggregator group that holds the partials partition
exports the judged windows' gauges (monitor/runtime/judging.py): a member that lost it
drops them, so a scrape never shows a stale verdict next to the judge's."""

from __future__ import annotations

from monitor.outputs import metrics as m
from monitor.outputs.exporter import Exporter
from monitor.runtime.judging import JudgeSeries
from tests.unit.test_exporter import make_report, samples


def judged_gauges(exporter: Exporter) -> set[str]:
    gauges = {d.name for d in m.ALL_METRICS if d.kind == "gauge"}
    return {
        name
        for name, rows in samples(exporter).items()
        if name in gauges and any("window" in labels for labels, _ in rows)
    }


def test_dropping_the_judged_series_keeps_health_and_counters() -> None:
    exporter = Exporter("fraud", "60s", "abcdef0123456789abcdef")
    exporter.observe_report(make_report(), evaluation_seconds=0.01)
    exporter.observe_aggregation(0.5, 1.0, [], open_windows=0)
    exporter.set_lag("topic", 0, 12)
    before = samples(exporter)
    assert {m.FEATURE_DRIFTED.name, m.LAST_WINDOW_CLOSE.name} <= judged_gauges(exporter)
    assert m.AGGREGATION_COVERAGE.name in before
    exporter.drop_judged_series()
    after = samples(exporter)
    assert judged_gauges(exporter) == set()
    assert m.AGGREGATION_COVERAGE.name not in after
    # the agent's health and every count stay as they were
    for name in (m.CONSUMER_LAG.name, m.SOURCE_UP.name, m.WINDOWS_CLOSED.name):
        assert after[name] == before[name], name
    # judging again sets them again
    exporter.observe_report(make_report(), evaluation_seconds=0.01)
    assert m.FEATURE_DRIFTED.name in judged_gauges(exporter)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_gauges_go_after_the_partition_stays_away_and_stay_through_a_rebalance() -> None:
    clock, drops = Clock(), []
    judging = JudgeSeries(lambda: drops.append(clock.now), after=15.0, clock=clock)
    judging.observe(holding=False)  # never judged: nothing to drop
    clock.now = 100.0
    judging.observe(holding=False)
    assert drops == []
    judging.judged()
    for t, holding in ((101.0, True), (102.0, False), (110.0, False), (111.0, True)):
        clock.now = t  # a rebalance that gives the partition straight back
        judging.observe(holding)
    assert drops == []
    for t in (120.0, 130.0, 134.9):
        clock.now = t
        judging.observe(holding=False)
    assert drops == []
    clock.now = 135.0
    judging.observe(holding=False)
    assert drops == [135.0] and not judging.exported
    clock.now = 200.0
    judging.observe(holding=False)  # dropped once
    assert drops == [135.0]
