"""KServe request/response pairing: the logger sends a prediction's request and its
response as two events with the same id, so the first half to arrive waits in a bounded
map (``record.kserve_pair_ttl`` seconds of processing time, at most
``record.kserve_max_pending`` halves) until its partner comes; a half whose partner never
comes is set aside with reason ``unpaired``, or ``model_error`` for a request whose
response never came (KServe logs a response only when the model answers 200). This is
the only decoding state kept between batches."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from detectors.schema import Schema
from monitor.config.record import RecordConfig
from monitor.ingest.attributions import AttributionField
from monitor.ingest.batch import BadRecord, DecodeFailure, SourceMessage
from monitor.ingest.kserve import Half, KServeReader
from monitor.ingest.rows import Read, Rows


class KServePairing:
    """Reads KServe events and joins their halves into rows.

    Rows completed in a later batch carry the partition and offset of the half that
    arrived first; :meth:`pending_offsets` says which offsets are still held so the agent
    does not commit past them.
    """

    def __init__(
        self, config: RecordConfig, schema: Schema, attributions: AttributionField | None = None
    ) -> None:
        self.config = config
        self.reader = KServeReader(config, schema, attributions)
        self._attributions = attributions is not None
        self._pending: dict[str, Half] = {}

    @property
    def pending(self) -> int:
        """Halves waiting for their partner."""
        return len(self._pending)

    def pending_offsets(self) -> dict[tuple[str, int], int]:
        """The lowest offset of a held (not yet paired) message per (topic, partition)."""
        low: dict[tuple[str, int], int] = {}
        for half in self._pending.values():
            tp = (half.message.topic, half.message.partition)
            low[tp] = min(low.get(tp, half.message.offset), half.message.offset)
        return low

    def release(self, partitions: set[tuple[str, int]]) -> int:
        """Forget the held halves of partitions revoked from this agent; returns how many.

        Their offsets were never committed (:meth:`pending_offsets`), so the partition's
        new owner reads them again and pairs them: expiring them here would count a pair
        that is not lost as ``unpaired``.
        """
        gone = [
            k
            for k, h in self._pending.items()
            if (h.message.topic, h.message.partition) in partitions
        ]
        for k in gone:
            del self._pending[k]
        return len(gone)

    def shift(self, gap: float) -> None:
        """The agent did not run for ``gap`` seconds (monitor/runtime/loop_gap.py): the
        held halves' TTL clocks move forward by it, so a pause is not taken for a partner
        that never came (it is likely in the backlog the agent reads next)."""
        for half in self._pending.values():
            half.arrived += gap

    def expire(self, now: float | None = None) -> list[DecodeFailure]:
        """Drop halves older than the pairing TTL; each becomes an ``unpaired`` failure.

        :meth:`read` calls it first; call it on idle ticks too, so a lone half is
        reported even when no more messages come.
        """
        now = time.time() if now is None else now
        ttl = self.config.kserve_pair_ttl
        expired = [k for k, h in self._pending.items() if now - h.arrived > ttl]
        return [self._unpaired(self._pending.pop(k), f"within {ttl:g}s") for k in expired]

    def read(self, messages: Sequence[SourceMessage], now: float) -> Read:
        """Rows of the pairs ``messages`` complete (after expiring old halves); the
        halves still waiting stay held."""
        failures = self.expire(now)
        rows = Rows()
        columns: dict[str, list[Any]] = {}
        paired = self.config.kserve_logger_mode == "all"
        for m in messages:
            try:
                half = self.reader.half(m, now)
            except BadRecord as bad:
                failures.append(DecodeFailure(bad.reason, bad.detail, m))
                continue
            except Exception as exc:
                # a value no rule foresaw (tensor data nested 1,000 deep, ...): set aside
                detail = f"a value could not be decoded ({type(exc).__name__})"
                failures.append(DecodeFailure("bad_value", detail, m))
                continue
            if half is None:  # a half the configured logger mode does not use
                continue
            if not paired:
                self._emit(half, None, columns, rows)
                continue
            other = self._pending.pop(half.ce_id, None)
            if other is None:
                if len(self._pending) >= self.config.kserve_max_pending:
                    oldest = self._pending.pop(next(iter(self._pending)))
                    failures.append(
                        self._unpaired(
                            oldest,
                            f"before {self.config.kserve_max_pending} newer halves "
                            "(kserve_max_pending) arrived",
                        )
                    )
                self._pending[half.ce_id] = half
            elif other.kind == half.kind:  # a redelivered half: keep the first
                self._pending[half.ce_id] = other
            elif other.rows != half.rows:
                failures.append(
                    DecodeFailure(
                        "bad_tensor",
                        f"the {other.kind} has {other.rows} rows and the {half.kind} {half.rows}",
                        m,
                    )
                )
            else:
                self._emit(other, half, columns, rows)
        total = len(rows)
        for values in columns.values():
            values.extend([None] * (total - len(values)))
        return columns, rows, failures, {}

    def _emit(
        self, first: Half, second: Half | None, columns: dict[str, list[Any]], rows: Rows
    ) -> None:
        """Rows of a completed pair (or of a lone half when the logger sends one kind)."""
        n, start = first.rows, len(rows)
        halves = (first,) if second is None else (first, second)
        for half in halves:
            for name, values in half.columns.items():
                col = columns.setdefault(name, [])
                col.extend([None] * (start - len(col)))
                col.extend(values)
        request = next((h for h in halves if h.kind == "request"), first)
        event_time = request.event_time
        if event_time is None:
            event_time = next((h.event_time for h in halves if h.event_time is not None), None)
        version = next((h.model_version for h in halves if h.model_version), None)
        trace = request.trace or next((h.trace for h in halves if h.trace), None)
        ce_id = first.ce_id
        rows.message.extend([first.message] * n)
        rows.index.extend(range(n))
        rows.request_id.extend([ce_id] * n)
        rows.key_text.extend([ce_id] if n == 1 else [f"{ce_id}#{i}" for i in range(n)])
        rows.time_raw.extend([event_time] * n)
        rows.version.extend([version] * n)
        rows.trace.extend([trace] * n)
        if self._attributions:  # the response's attributions tensor (or none: missing)
            logged = next((h.attributions for h in halves if h.attributions is not None), None)
            rows.attribution.extend(logged if logged is not None else [None] * n)

    def _unpaired(self, half: Half, when: str) -> DecodeFailure:
        partner = "response" if half.kind == "request" else "request"
        if half.kind == "request" and when.startswith("within"):
            # KServe logs a response only when the model answered 200: the model failed
            return DecodeFailure(
                "model_error",
                f"an inference request with no response {when}: the model did not answer "
                "it with HTTP 200 (KServe logs only successful responses)",
                half.message,
            )
        return DecodeFailure(
            "unpaired",
            f"an inference {half.kind} whose {partner} did not arrive {when}",
            half.message,
        )
