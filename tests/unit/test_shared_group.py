"""A lone agent (``aggregation.role: none``) that shares its consumer group with other
members judges only its share of each window: it says so once per assignment and names
the fix (monitor/runtime/shared_group.py)."""

from __future__ import annotations

import logging

import pytest

from monitor.runtime.shared_group import SharedGroupCheck

COUNTS = {"predictions": 3, "other": 2}


def check(*topics: str) -> SharedGroupCheck:
    return SharedGroupCheck(list(topics), COUNTS.get)


def test_a_share_of_the_partitions_is_reported_with_its_size() -> None:
    c = check("predictions")
    assert c.share({("predictions", 0), ("predictions", 2)}) == (2, 3)
    assert c.share({("predictions", p) for p in range(3)}) is None  # all of them: alone
    assert c.share(set()) is None  # nothing yet (joining)
    # partitions of other topics (labels, pairs) are not the share
    assert c.share({("predictions", 1), ("labels", 0)}) == (1, 3)
    assert check("predictions", "other").share({("predictions", p) for p in range(3)}) == (3, 5)
    assert SharedGroupCheck(["predictions"], lambda t: None).share({("predictions", 0)}) is None


def test_it_warns_once_per_assignment_and_again_after_a_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = check("predictions")
    caplog.set_level(logging.WARNING, logger="monitor.runtime.shared_group")
    one = {("predictions", 0)}
    assert c.observe(one) and not c.observe(one)
    [record] = caplog.records
    assert "reads 1 of the 3 partitions of predictions" in record.getMessage()
    assert "aggregation.role: both" in record.getMessage()
    assert not c.observe({("predictions", p) for p in range(3)})  # alone again: quiet
    assert c.observe(one)  # shared again: said again
    assert c.observe({("predictions", 1), ("predictions", 2)})
    assert len(caplog.records) == 3
