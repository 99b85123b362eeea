"""Label records in, columns out.

A label record is one JSON object, ``{"request_id": "r1", "label": 1, "timestamp":
1718000000.5, "revenue": 12.5}`` (the field names are the ``labels.*_field`` paths,
dotted), or a JSON array of such objects. The label is a class (text, number or boolean)
or a value (regression). KPI fields are read from the same record. A record that cannot
be used is set aside with a fixed reason and a detail that never quotes the payload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from monitor.config.labels import KpiConfig, LabelsConfig
from monitor.ingest.batch import SourceMessage
from monitor.ingest.values import parse_event_time, row_keys

LABEL_FAILURES = ("invalid_json", "not_an_object", "missing_field", "bad_timestamp")


@dataclass(frozen=True)
class LabelFailure:
    reason: str
    detail: str
    topic: str = ""
    partition: int = 0
    offset: int = 0


@dataclass
class LabelBatch:
    """Decoded labels, one entry per label: request ids, their row keys (the same hash
    the predictions' dedupe uses), raw label values, event times (NaN where absent) and
    one float array per KPI read from the label records."""

    request_id: np.ndarray
    row_key: np.ndarray
    label: np.ndarray
    event_time: np.ndarray
    kpis: dict[str, np.ndarray] = field(default_factory=dict)
    failures: list[LabelFailure] = field(default_factory=list)
    # each label's labels topic partition (None: not read from Kafka)
    partition: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.row_key)

    def take(self, idx: np.ndarray) -> LabelBatch:
        return LabelBatch(
            self.request_id[idx],
            self.row_key[idx],
            self.label[idx],
            self.event_time[idx],
            {k: v[idx] for k, v in self.kpis.items()},
            partition=None if self.partition is None else self.partition[idx],
        )

    @classmethod
    def from_columns(
        cls,
        request_id: Sequence[Any],
        label: Sequence[Any],
        event_time: Sequence[float] | np.ndarray | None = None,
        kpis: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    ) -> LabelBatch:
        ids = np.array([str(i) for i in request_id], dtype=object)
        n = len(ids)
        times = np.full(n, np.nan) if event_time is None else np.asarray(event_time, float)
        return cls(
            ids,
            row_keys(ids.tolist()),
            np.asarray(list(label), dtype=object),
            times,
            {k: np.asarray(v, dtype=np.float64) for k, v in (kpis or {}).items()},
        )


class LabelDecoder:
    """Decodes label messages with the configured field paths."""

    def __init__(self, config: LabelsConfig, kpis: Sequence[KpiConfig] = ()) -> None:
        self.id_path = config.request_id_field.split(".")
        self.label_path = config.label_field.split(".")
        self.time_path = config.event_time_field.split(".")
        self.kpis = {k.name: k.path.split(".") for k in kpis if k.from_ == "labels"}

    def decode(self, messages: Sequence[SourceMessage]) -> LabelBatch:
        ids: list[str] = []
        labels: list[Any] = []
        times: list[float] = []
        kpis: dict[str, list[float]] = {k: [] for k in self.kpis}
        failures: list[LabelFailure] = []
        parts: list[int] = []
        for msg in messages:

            def fail(reason: str, detail: str, msg: SourceMessage = msg) -> None:
                failures.append(LabelFailure(reason, detail, msg.topic, msg.partition, msg.offset))

            try:
                doc = orjson.loads(msg.value or b"")
            except orjson.JSONDecodeError:
                fail("invalid_json", "label record is not JSON")
                continue
            items = doc if isinstance(doc, list) else [doc]
            for item in items:
                if not isinstance(item, dict):
                    fail("not_an_object", "label record is not a JSON object")
                    continue
                rid, label = _get(item, self.id_path), _get(item, self.label_path)
                if rid is None or isinstance(rid, (dict, list)) or rid == "":
                    fail("missing_field", f"no request id at {'.'.join(self.id_path)}")
                    continue
                if label is None or isinstance(label, (dict, list)):
                    fail("missing_field", f"no label at {'.'.join(self.label_path)}")
                    continue
                raw_time = _get(item, self.time_path)
                if raw_time is None:
                    t = math.nan
                else:
                    try:
                        t = parse_event_time(raw_time)
                    except ValueError:
                        fail("bad_timestamp", f"unreadable time at {'.'.join(self.time_path)}")
                        continue
                ids.append(str(rid))
                labels.append(label)
                times.append(t)
                parts.append(msg.partition)
                for name, path in self.kpis.items():
                    v = _get(item, path)
                    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
                    kpis[name].append(float(v) if ok else math.nan)
        batch = LabelBatch.from_columns(ids, labels, times, kpis)
        batch.failures = failures
        batch.partition = np.asarray(parts, dtype=np.int64)
        return batch


def _get(doc: dict[str, Any], path: list[str]) -> Any:
    cur: Any = doc
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur
