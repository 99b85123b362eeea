"""Event times too far ahead of the clock: set aside before they reach the windows.

A record's event time moves its partition's progress and so the watermark
(``monitor/runtime/watermarks.py``). One record stamped an hour ahead — a producer with a
wrong clock, a unit mistake, an attacker — would close every open window at once and
make the next hour of records late. Records whose event time is more than
``windows.max_event_skew`` ahead of processing time are therefore set aside: counted as
``future_timestamp`` failures, logged without their payload and dead-lettered like any
record that cannot be used. They are not clamped to the clock: a clamped record would
land in a window it does not belong to, and the model's real time is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from monitor.ingest.batch import DecodedBatch, DecodeFailure, RawMessage, SourceMessage

REASON = "future_timestamp"


def bound_event_time(
    batch: DecodedBatch,
    now: float,
    max_skew: float | None,
    messages: Sequence[SourceMessage] = (),
) -> tuple[DecodedBatch, list[DecodeFailure]]:
    """The rows within ``max_skew`` seconds of ``now`` and one failure per message set aside.

    ``messages`` are the batch's source messages (to dead-letter the ones set aside);
    rows from other sources (a table) are reported with their partition and offset only.
    """
    if max_skew is None or batch.rows == 0:
        return batch, []
    t = np.asarray(batch.event_time, dtype=np.float64)
    ahead = t > now + max_skew  # NaN compares False: a missing time is not in the future
    if not ahead.any():
        return batch, []
    by_place = {(m.partition, m.offset): m for m in messages}
    failures: list[DecodeFailure] = []
    seen: set[tuple[int, int]] = set()
    for i in np.flatnonzero(ahead).tolist():
        place = (int(batch.partition[i]), int(batch.offset[i]))
        if place in seen:
            continue
        seen.add(place)
        message = by_place.get(place) or RawMessage(None, partition=place[0], offset=place[1])
        failures.append(
            DecodeFailure(
                REASON,
                f"event time {t[i] - now:.0f} s ahead of the clock "
                f"(windows.max_event_skew is {max_skew:g} s)",
                message,
            )
        )
    kept = batch.take(~ahead)
    kept.failures = batch.failures
    kept.messages = batch.messages
    return kept, failures
