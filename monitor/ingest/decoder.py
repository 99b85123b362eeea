"""Prediction records in, columns out: the :class:`Decoder` turns a batch of raw messages
into one columnar :class:`~monitor.ingest.batch.DecodedBatch` that the windows and sketches
take whole. This is the decoding path's entry point; each step has its own module:

- :mod:`monitor.ingest.driftline_json` reads the ``driftline`` format (JSON records);
- :mod:`monitor.ingest.kserve` reads the ``kserve_v2`` format (KServe inference-logger
  CloudEvents, Open Inference Protocol bodies) and :mod:`monitor.ingest.pairing` joins
  each request with its response;
- :mod:`monitor.ingest.assemble` turns the gathered values into numpy columns, with the
  conventions of :mod:`monitor.ingest.values`;
- :mod:`monitor.ingest.batch` defines the batch, the failures and their reasons.

Decoding is batch-first (docs/architecture.md, "Vectorized"): values are gathered into one
list per column, and each column becomes one numpy array (large batches in chunks of
:data:`DECODE_CHUNK` messages). Numeric columns are float64 (NaN where null or absent)
when every value is a number, else an object array so the sketch counts the type errors;
categorical columns are object arrays of str/None.

A malformed record never raises: it becomes a :class:`~monitor.ingest.batch.DecodeFailure`
with one of the fixed :data:`~monitor.ingest.batch.FAILURE_REASONS` (a metric label) and a
detail that never quotes the payload, and the other rows of the batch are decoded as usual.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence

import numpy as np

from detectors.schema import Schema
from monitor.config.record import RecordConfig
from monitor.ingest.assemble import BatchAssembler
from monitor.ingest.attributions import AttributionField
from monitor.ingest.batch import DecodedBatch, DecodeFailure, SourceMessage
from monitor.ingest.columnar import ColumnarReader
from monitor.ingest.driftline_json import DriftlineJsonReader
from monitor.ingest.pairing import KServePairing
from monitor.ingest.rows import Read, Rows

ROW_FIELDS = (
    "message",
    "index",
    "key_text",
    "request_id",
    "time_raw",
    "version",
    "trace",
    "attribution",
)

# Large batches are decoded in chunks of this many messages: the per-row objects of a
# chunk stay in the CPU caches, which makes a 100k-message batch about twice as fast.
DECODE_CHUNK = 4096
# More runs of records the columnar path leaves than this, and the chunk is read whole by
# the general reader (one call instead of many small ones).
MAX_RUNS = 16


class Decoder:
    """Decodes batches of raw messages for one model's schema, in the configured
    ``record.format``.

    Only KServe pairing keeps state between batches (see :mod:`monitor.ingest.pairing`):
    :attr:`pending`, :meth:`pending_offsets` and :meth:`expire` expose it so the agent
    does not commit past a held half and reports a lone one.
    """

    def __init__(
        self,
        config: RecordConfig,
        schema: Schema,
        *,
        columnar: bool = True,
        attributions: AttributionField | None = None,
    ) -> None:
        self.config = config
        self.schema = schema
        # attributions logged in the records (explain.source: record), read with the rows
        self.attributions = attributions
        self.driftline = DriftlineJsonReader(config, schema, attributions)
        self.kserve = KServePairing(config, schema, attributions)
        self.assembler = BatchAssembler(config, schema, attributions)
        # The fast path for clean records of the default shape (None for other shapes).
        self.columnar = (
            ColumnarReader.for_config(config, schema, attributions) if columnar else None
        )

    @property
    def pending(self) -> int:
        """KServe halves waiting for their partner."""
        return self.kserve.pending

    def pending_offsets(self) -> dict[tuple[str, int], int]:
        """The lowest offset of a held (not yet paired) message per (topic, partition)."""
        return self.kserve.pending_offsets()

    def shift(self, gap: float) -> None:
        """The agent did not run for ``gap`` seconds: KServe halves wait that much longer."""
        self.kserve.shift(gap)

    def expire(self, now: float | None = None) -> list[DecodeFailure]:
        """Drop halves older than the pairing TTL; each becomes an ``unpaired`` failure.

        :meth:`decode` calls it first; call it on idle ticks too, so a lone half is
        reported even when no more messages come.
        """
        return self.kserve.expire(now)

    def decode(self, messages: Sequence[SourceMessage], now: float | None = None) -> DecodedBatch:
        """Decode a batch; never raises for a bad record (see
        :data:`~monitor.ingest.batch.FAILURE_REASONS`).

        ``now`` (seconds since the epoch) is the event time of rows that carry none and
        have no Kafka timestamp, and the clock of the KServe pairing TTL.
        """
        now = time.time() if now is None else now
        # Decoding allocates many small acyclic objects (freed by reference counting); left
        # on, the cyclic collector would walk the agent's whole heap over and over for them.
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            if len(messages) <= DECODE_CHUNK:
                return self._decode_chunk(messages, now)
            parts = [
                self._decode_chunk(messages[i : i + DECODE_CHUNK], now)
                for i in range(0, len(messages), DECODE_CHUNK)
            ]
            return self.assembler.concat(parts)
        finally:
            if collecting:
                gc.enable()

    def _decode_chunk(self, messages: Sequence[SourceMessage], now: float) -> DecodedBatch:
        if self.columnar is not None:
            try:
                fast, rest = self.columnar.decode(messages, now)
            except Exception:  # never: the general reader decides (decision 7)
                return self._decode_general(messages, now)
            if rest:
                return self._merge(fast, rest, messages, now)
            return fast
        return self._decode_general(messages, now)

    def _merge(
        self, fast: DecodedBatch, rest: list[int], messages: Sequence[SourceMessage], now: float
    ) -> DecodedBatch:
        """The rows of the columnar path and of the general reader (for the messages at
        ``rest``), in message order. Runs of consecutive leftovers are read together; when
        they are many, the whole chunk is (the results are the same, only the time is not)."""
        runs: list[tuple[int, int]] = []
        for i in rest:
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        if len(runs) > MAX_RUNS:
            return self._decode_general(messages, now)
        parts: list[DecodedBatch] = []
        done = row = 0
        for start, end in runs:
            if start > done:
                parts.append(fast.take(np.arange(row, row + start - done)))
                row += start - done
            part = self._decode_general(messages[start:end], now)
            if not part.rows:  # no rows: its (empty) columns must not make a column present
                part.columns = {}
            parts.append(part)
            done = end
        if row < fast.rows:
            parts.append(fast.take(np.arange(row, fast.rows)))
        batch = self.assembler.concat(parts)
        batch.messages = len(messages)
        return batch

    def _decode_general(self, messages: Sequence[SourceMessage], now: float) -> DecodedBatch:
        """The general readers: every record shape and format, a reason for every failure."""
        if self.config.format == "kserve_v2":
            read = self.kserve.read(messages, now)  # sets aside what it cannot read
        else:
            try:
                read = self.driftline.read(messages)
            except Exception:  # a value no rule foresaw: find its record (decision 7)
                return self._one_by_one(messages, now)
        columns, rows, failures, bad = read
        try:
            return self.assembler.finish(columns, rows, now, failures, bad, len(messages))
        except Exception:
            return self._finish_rows(read, now, len(messages))

    def _one_by_one(self, messages: Sequence[SourceMessage], now: float) -> DecodedBatch:
        """Each message decoded alone; one that still raises is set aside as ``bad_value``
        (the exception's type in the detail, never the payload)."""
        parts = []
        for m in messages:
            try:
                columns, rows, failures, bad = self.driftline.read([m])
                parts.append(self.assembler.finish(columns, rows, now, failures, bad, 1))
            except Exception as exc:
                parts.append(self._unreadable(m, exc))
        return self.assembler.concat(parts)

    def _finish_rows(self, read: Read, now: float, n_messages: int) -> DecodedBatch:
        """The batch of ``read`` assembled row by row, a row that raises set aside."""
        columns, rows, failures, bad = read
        parts = [DecodedBatch.empty()]
        parts[0].failures = list(failures)
        for i in range(len(rows)):
            if i in bad:
                parts[0].failures.append(bad[i])
                continue
            one = Rows(*([getattr(rows, f)[i]] if getattr(rows, f) else [] for f in ROW_FIELDS))
            try:
                part = self.assembler.finish(
                    {name: [values[i]] for name, values in columns.items()}, one, now, [], {}, 0
                )
            except Exception as exc:
                part = self._unreadable(rows.message[i], exc)
                part.messages = 0
            parts.append(part)
        batch = self.assembler.concat(parts)
        batch.messages = n_messages
        return batch

    @staticmethod
    def _unreadable(m: SourceMessage, exc: Exception) -> DecodedBatch:
        batch = DecodedBatch.empty()
        batch.messages = 1
        batch.failures = [
            DecodeFailure("bad_value", f"a value could not be decoded ({type(exc).__name__})", m)
        ]
        return batch
