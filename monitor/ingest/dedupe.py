"""Request-id deduplication with bounded memory.

Kafka delivers at least once and the agent replays records after a restart, so the same
prediction can arrive twice; counting it twice would bias every window it lands in. The
deduplicator remembers the 64-bit row keys (hashes of request ids) it has seen together
with their event time, and answers for a whole batch at once whether each key is a
duplicate.

Keys are kept in a sorted array, searched with ``np.searchsorted``: a batch of n keys
against m remembered ones costs one sort of the batch, one search and one merge, all in
numpy. Keys whose event time falls behind ``watermark - horizon`` are forgotten (a row
that old lands in a closed window anyway, so it would be counted as late, never twice);
they stop matching at once and are physically dropped in bulk, once the store has doubled
since the last purge. ``max_ids`` is a hard cap: beyond it the keys with the oldest event
times are evicted — a sixteenth of the cap at a time, so eviction runs rarely — and
counted in ``evicted``, because an evicted key that comes back is not recognised.
"""

from __future__ import annotations

import io
import json

import numpy as np

_EVICT_FRACTION = 16
_MIN_PURGE_SIZE = 1024
# The small sorted level takes inserts and is merged into the large one when it outgrows
# this many keys or an eighth of the large level, so a small batch never copies the whole
# store and each key is copied a bounded number of times on average.
_RECENT_MIN = 8192
_RECENT_SHARE = 8


class Deduplicator:
    """Remembers row keys with their event time; flags the ones seen before."""

    def __init__(self, max_ids: int, horizon_seconds: float) -> None:
        if max_ids < 1:
            raise ValueError(f"max_ids must be at least 1, got {max_ids}")
        if not horizon_seconds >= 0:
            raise ValueError(f"horizon_seconds must be >= 0, got {horizon_seconds}")
        self.max_ids = int(max_ids)
        self.horizon_seconds = float(horizon_seconds)
        # two sorted levels (large, recent); a key is in at most one of them
        self._keys = [np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64)]
        self._times = [np.empty(0, dtype=np.float64), np.empty(0, dtype=np.float64)]
        self._cutoff = -np.inf  # keys with an earlier event time no longer match
        self._size_after_purge = 0
        self.evicted = 0  # keys dropped by the max_ids cap

    def __len__(self) -> int:
        """Keys held in memory (expired ones not yet purged included)."""
        return len(self._keys[0]) + len(self._keys[1])

    @property
    def cutoff(self) -> float:
        """Event time before which keys are forgotten."""
        return self._cutoff

    def check_and_add(self, keys: np.ndarray, event_time: np.ndarray) -> np.ndarray:
        """True for each key seen before (earlier in this batch included); remembers the rest.

        The first occurrence of a key within the batch is not a duplicate, later ones are.
        A remembered key whose event time fell behind the cutoff counts as new and takes
        the new event time.
        """
        keys = np.asarray(keys, dtype=np.uint64)
        times = np.asarray(event_time, dtype=np.float64)
        n = len(keys)
        if len(times) != n:
            raise ValueError(f"{n} keys but {len(times)} event times")
        if n == 0:
            return np.zeros(0, dtype=bool)
        # first occurrence of each distinct key in the batch: the smallest index of its run
        order = np.argsort(keys)
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        first_idx = np.minimum.reduceat(order, starts)
        dup = np.ones(n, dtype=bool)
        dup[first_idx] = False
        new_keys, new_times = sorted_keys[starts], times[first_idx]

        seen = np.zeros(len(new_keys), dtype=bool)
        for level in (0, 1):
            lk, lt = self._keys[level], self._times[level]
            if not len(lk):
                continue
            pos = np.searchsorted(lk, new_keys)
            inside = pos < len(lk)
            match = np.zeros(len(new_keys), dtype=bool)
            match[inside] = lk[pos[inside]] == new_keys[inside]
            live = match.copy()
            live[match] = lt[pos[match]] >= self._cutoff
            # expired keys seen again are remembered afresh, in place
            stale = match & ~live
            lt[pos[stale]] = new_times[stale]
            seen |= match
            dup[first_idx[live]] = True
        add = ~seen
        if add.any():
            self._insert(new_keys[add], new_times[add])
        return dup

    def _insert(self, keys: np.ndarray, times: np.ndarray) -> None:
        """Add sorted keys that are in neither level."""
        rk, rt = self._keys[1], self._times[1]
        pos = np.searchsorted(rk, keys)
        self._keys[1], self._times[1] = np.insert(rk, pos, keys), np.insert(rt, pos, times)
        if len(self._keys[1]) > max(_RECENT_MIN, len(self._keys[0]) // _RECENT_SHARE):
            self._keys[0], self._times[0] = self._merged()
            self._keys[1] = np.empty(0, dtype=np.uint64)
            self._times[1] = np.empty(0, dtype=np.float64)
        if len(self) > self.max_ids:
            self._purge()
            self._evict()

    def _merged(self) -> tuple[np.ndarray, np.ndarray]:
        """Both levels as one sorted pair of arrays (the levels are left as they are)."""
        (mk, rk), (mt, rt) = self._keys, self._times
        if not len(rk):
            return mk, mt
        pos = np.searchsorted(mk, rk)
        return np.insert(mk, pos, rk), np.insert(mt, pos, rt)

    def advance(self, watermark: float) -> None:
        """Forget keys with event time before ``watermark - horizon_seconds``."""
        cutoff = float(watermark) - self.horizon_seconds
        if cutoff > self._cutoff:
            self._cutoff = cutoff
        if len(self) >= max(2 * self._size_after_purge, _MIN_PURGE_SIZE):
            self._purge()

    def _purge(self) -> None:
        for level in (0, 1):
            keep = self._times[level] >= self._cutoff
            if not keep.all():
                self._keys[level] = self._keys[level][keep]
                self._times[level] = self._times[level][keep]
        self._size_after_purge = len(self)

    def _evict(self) -> None:
        excess = len(self) - self.max_ids
        if excess <= 0:
            return
        excess = min(len(self), excess + self.max_ids // _EVICT_FRACTION)
        keys, times = self._merged()
        drop = np.argpartition(times, excess - 1)[:excess] if excess < len(times) else None
        if drop is None:
            keys, times = keys[:0], times[:0]
        else:
            keep = np.ones(len(keys), dtype=bool)
            keep[drop] = False
            keys, times = keys[keep], times[keep]
        self._keys = [keys, np.empty(0, dtype=np.uint64)]
        self._times = [times, np.empty(0, dtype=np.float64)]
        self.evicted += int(excess)
        self._size_after_purge = len(self)

    # -- serialisation --------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The complete state as an .npz without pickles."""
        meta = {
            "max_ids": self.max_ids,
            "horizon_seconds": self.horizon_seconds,
            "cutoff": None if self._cutoff == -np.inf else self._cutoff,
            "size_after_purge": self._size_after_purge,
            "evicted": self.evicted,
        }
        keys, times = self._merged()
        buf = io.BytesIO()
        np.savez(
            buf,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            keys=keys,
            times=times,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Deduplicator:
        """Restore a state written by ``to_bytes``."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes())
                keys, times = npz["keys"], npz["times"]
            out = cls(int(meta["max_ids"]), float(meta["horizon_seconds"]))
            cutoff = meta["cutoff"]
            out._size_after_purge = int(meta["size_after_purge"])
            out.evicted = int(meta["evicted"])
        except (ValueError, KeyError, TypeError, OSError, EOFError) as exc:
            raise ValueError(f"corrupt deduplicator state: {exc}") from exc
        if keys.dtype != np.uint64 or times.dtype != np.float64 or len(keys) != len(times):
            raise ValueError("corrupt deduplicator state: key and time arrays do not match")
        out._keys[0], out._times[0] = keys, times
        out._cutoff = -np.inf if cutoff is None else float(cutoff)
        return out
