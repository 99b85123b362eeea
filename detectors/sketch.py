"""The window sketch: a bounded, exactly mergeable summary of one window's rows.

Numeric columns are counted into the profile's bins, with count, missing, type errors
(a string in a numeric column), non-finite values, min, max, sum, the sum and sum of
squares of the deviations from a fixed shift (the reference mean: see ``std``), and
the sum of the values in each bin (so each bin's mean is known: the binned Wasserstein
distance places a bin's mass there).
Categorical columns are counted over the profile's vocabulary plus "other" and "unseen".
A bottom-k reservoir keeps a uniform sample of whole rows for the tests that need rows,
and, when the records log their own attributions, a bottom-k sample of those
(detectors/attribution_sample.py).

Memory is O(features × bins + reservoir) whatever the traffic, and
``merge(sketch(A), sketch(B)) == sketch(A ∪ B)``: counts add, min/max combine, sums add
(equal up to the order of the float additions), and the reservoir keeps the k smallest
row keys of both sides — with keys derived from row ids (``row_keys``) the merged
reservoir is the very sample the union would have produced, and with random keys it is a
uniform sample of the union (Efraimidis and Spirakis, 2006).
"""

from __future__ import annotations

import copy
import io
import json
import math
import sys
from collections.abc import Mapping
from itertools import repeat
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from detectors.attribution_sample import AttributionSample
from detectors.binning import edge_index
from detectors.profile import MISSING, Profile, category_strings

DEFAULT_RESERVOIR_SIZE = 1024
# Extra columns not in the schema are counted by name, up to this many names.
MAX_EXTRA_COLUMNS = 64

if TYPE_CHECKING:
    import pandas as pd

# pandas is not imported here: the agent's path stays without it (docs/architecture.md,
# "Imports on the agent's path"); a DataFrame batch brings its own pandas.
Batch: TypeAlias = "Mapping[str, Any] | pd.DataFrame"


class SketchMismatchError(ValueError):
    """Two sketches (or a sketch and a checkpoint) built on different profiles or sizes."""


class WindowSketch:
    """Counts, bins and a row sample of one window, over one reference profile."""

    def __init__(
        self,
        profile: Profile,
        reservoir_size: int = DEFAULT_RESERVOIR_SIZE,
        seed: int | None = None,
    ) -> None:
        if reservoir_size < 0:
            raise ValueError(f"reservoir_size must be >= 0, got {reservoir_size}")
        self.profile = profile
        self.reservoir_size = reservoir_size
        self._rng = np.random.default_rng(seed)
        nn, nc = len(profile.numeric_names), len(profile.categorical_names)
        self.rows = 0
        # numeric, one entry per feature in profile.numeric_names order
        self.num_counts = np.zeros((nn, profile.numeric_width), dtype=np.int64)
        self.num_missing = np.zeros(nn, dtype=np.int64)
        self.num_type_error = np.zeros(nn, dtype=np.int64)
        self.num_non_finite = np.zeros(nn, dtype=np.int64)
        self.num_min = np.full(nn, np.inf)
        self.num_max = np.full(nn, -np.inf)
        self.num_sum = np.zeros(nn)
        # Σ (x − shift) and Σ (x − shift)², the shift being the reference mean: the variance
        # from raw power sums, Σx² − (Σx)² / n, cancels to nothing on values near 1e9 (a
        # timestamp); from deviations it keeps its precision, and sums still merge by adding.
        numeric = [profile.numeric[n] for n in profile.numeric_names]
        self.num_shift = np.array([_shift(p.mean, p.std) for p in numeric], dtype=np.float64)
        self.num_dev_sum = np.zeros(nn)
        self.num_dev_sumsq = np.zeros(nn)
        # sum of the finite values in each bin, laid out like num_counts
        self.num_bin_sums = np.zeros((nn, profile.numeric_width))
        # categorical, in profile.categorical_names order; last two columns other, unseen
        self.cat_counts = np.zeros((nc, profile.categorical_width), dtype=np.int64)
        self.cat_missing = np.zeros(nc, dtype=np.int64)
        # rows in which a schema column was absent altogether (also counted as missing)
        self.absent = np.zeros(len(profile.schema.columns), dtype=np.int64)
        self.extra_columns: dict[str, int] = {}
        # bottom-k reservoir: keys in [0, 1) and the row values they belong to
        self.res_keys = np.empty(0, dtype=np.float64)
        self.res_numeric = np.empty((0, nn), dtype=np.float64)
        self.res_categorical = np.empty((0, nc), dtype=object)
        # attributions the records logged, in profile.attribution.features order (None
        # until a batch brings some)
        self.attribution: AttributionSample | None = None

    # -- derived counts -------------------------------------------------------------------

    @property
    def num_count(self) -> np.ndarray:
        """Finite values per numeric feature (those in the histogram)."""
        return self.num_counts.sum(axis=1)

    @property
    def num_below(self) -> np.ndarray:
        """Values below the reference minimum, per numeric feature (bin 0)."""
        return self.num_counts[:, 0].copy()

    @property
    def num_above(self) -> np.ndarray:
        """Values above the reference maximum, per numeric feature (each one's last bin)."""
        last = np.array([self.profile.numeric[n].bins - 1 for n in self.profile.numeric_names])
        return self.num_counts[np.arange(len(last)), last] if len(last) else np.zeros(0, np.int64)

    @property
    def cat_count(self) -> np.ndarray:
        return self.cat_counts.sum(axis=1)

    @property
    def cat_unseen(self) -> np.ndarray:
        return self.cat_counts[:, -1].copy()

    @property
    def complete(self) -> bool:
        """True when the reservoir holds every row of the window (exact tests possible)."""
        return self.rows <= self.reservoir_size

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.num_sum / self.num_count

    def bin_means(self) -> np.ndarray:
        """Mean of each bin's values, (numeric features × bins); NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.num_counts > 0, self.num_bin_sums / self.num_counts, np.nan)

    def std(self) -> np.ndarray:
        """Sample standard deviation from the shifted power sums (NaN with fewer than two
        values): ``(Σd² − (Σd)² / n) / (n − 1)`` with ``d = x − shift``."""
        n = self.num_count.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (self.num_dev_sumsq - self.num_dev_sum**2 / n) / (n - 1)
        return np.sqrt(np.maximum(var, 0.0))

    # -- update ---------------------------------------------------------------------------

    def update(
        self,
        batch: Batch,
        row_keys: np.ndarray | None = None,
        attributions: np.ndarray | None = None,
    ) -> int:
        """Add a columnar batch; returns its row count.

        ``batch`` maps column names to equal-length arrays (or is a DataFrame). A schema
        column absent from the batch counts as missing in every row. ``row_keys`` are
        optional uint64 hashes of row identities (request ids): with them the reservoir
        is a deterministic function of the set of rows seen. ``attributions`` are the
        rows' logged attributions (rows × the profile's attribution features, a row with
        NaN where a record had none), sampled by the same keys.
        """
        columns = _columns(batch)
        n = _batch_len(columns)
        if n == 0:
            return 0
        if row_keys is not None and len(row_keys) != n:
            raise ValueError(f"row_keys has {len(row_keys)} entries for a batch of {n} rows")
        prof = self.profile
        self.rows += n
        for i, col in enumerate(prof.schema.columns):
            if col.name not in columns:
                self.absent[i] += n
        for name in columns:
            if name not in prof.schema.names and (
                name in self.extra_columns or len(self.extra_columns) < MAX_EXTRA_COLUMNS
            ):
                self.extra_columns[name] = self.extra_columns.get(name, 0) + n

        candidates = self._reservoir_candidates(n, row_keys)
        if attributions is not None and self.reservoir_size:
            if self.attribution is None:
                self.attribution = AttributionSample.of(self.profile, self.reservoir_size)
            self.attribution.update(candidates[2], attributions)
        num = self._update_numeric(columns, n, candidates[0])
        cat = self._update_categorical(columns, n, candidates[0])
        if self.reservoir_size:
            self._keep_smallest(
                np.concatenate([self.res_keys, candidates[1]]),
                np.concatenate([self.res_numeric, num]),
                np.concatenate([self.res_categorical, cat]),
            )
        return n

    def _reservoir_candidates(
        self, n: int, row_keys: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of the batch whose keys could enter the reservoir, those keys, and the
        keys of all the batch's rows."""
        if not self.reservoir_size:
            return np.empty(0, dtype=np.intp), np.empty(0), np.empty(0)
        if row_keys is None:
            keys = self._rng.random(n)
        else:
            keys = (np.asarray(row_keys, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * (
                1.0 / (1 << 53)
            )
        k = self.reservoir_size
        combined = np.concatenate([self.res_keys, keys])
        if len(combined) <= k:
            return np.arange(n), keys, keys
        cutoff = np.partition(combined, k - 1)[k - 1]
        idx = np.flatnonzero(keys <= cutoff)
        return idx, keys[idx], keys

    def _update_numeric(self, columns: Mapping[str, Any], n: int, rows: np.ndarray) -> np.ndarray:
        """Count, sum and bin every numeric feature, one column at a time.

        Column by column, a batch's passes stay in the CPU's cache; each finite value's
        bin comes from the column's :class:`~detectors.binning.EdgeIndex` (exact, a few
        ns a value) and the bins' counts and sums from two ``bincount`` passes.
        """
        names = self.profile.numeric_names
        picked = np.full((len(rows), len(names)), np.nan)
        for j, name in enumerate(names):
            raw = columns.get(name)
            if raw is None:
                self.num_missing[j] += n
                continue
            x, type_errors = _numeric_values(raw)
            if len(rows):
                picked[:, j] = x[rows]
            self._add_numeric(j, name, x, type_errors)
        return picked

    def _add_numeric(self, j: int, name: str, x: np.ndarray, type_errors: int) -> None:
        n, nan = len(x), 0
        total = x.sum()
        if np.isfinite(total):  # no NaN and no infinity: every value counts
            finite_n = n
        else:
            finite = np.isfinite(x)
            finite_n = int(np.count_nonzero(finite))
            nan = int(np.count_nonzero(np.isnan(x)))
            x = x[finite]
            total = x.sum()
        self.num_type_error[j] += type_errors
        self.num_missing[j] += nan - type_errors
        self.num_non_finite[j] += n - nan - finite_n
        if not finite_n:
            return
        self.num_min[j] = min(self.num_min[j], x.min())
        self.num_max[j] = max(self.num_max[j], x.max())
        self.num_sum[j] += total
        dev = x - self.num_shift[j]
        self.num_dev_sum[j] += dev.sum()
        self.num_dev_sumsq[j] += np.einsum("i,i->", dev, dev)
        index = edge_index((self.profile.content_hash, name), self.profile.numeric[name].edges)
        slot = index.bins(x)
        width = index.width
        self.num_counts[j, :width] += np.bincount(slot, minlength=width)
        self.num_bin_sums[j, :width] += np.bincount(slot, weights=x, minlength=width)

    def _update_categorical(
        self, columns: Mapping[str, Any], n: int, rows: np.ndarray
    ) -> np.ndarray:
        """Count categories through a dict from category text to bin.

        A column of text (what decoded JSON holds) meets the dict in one C loop
        (``map(slots.get, ...)``), and the values it does not know once each
        (docs/architecture.md, decision 3); values that are not text (numbers, missing
        values) go through ``category_strings`` row by row, so 1, 1.0 and True keep their
        own categories.
        """
        prof = self.profile
        names = prof.categorical_names
        values = np.full((len(rows), len(names)), None, dtype=object)
        width = prof.categorical_width
        for j, name in enumerate(names):
            raw = columns.get(name)
            if raw is None:
                self.cat_missing[j] += n
                continue
            arr = np.asarray(raw)
            slots = _category_slots(prof, name)
            slot = _text_slots(arr, slots, width - 1)
            unknown = np.flatnonzero(slot < 0)
            if len(unknown):
                strings, miss = category_strings(arr[unknown])
                again = np.fromiter(
                    map(slots.get, strings, repeat(width - 1, len(strings))),
                    dtype=np.int64,
                    count=len(strings),
                )
                slot[unknown] = np.where(miss, -1, again)
                self.cat_missing[j] += int(miss.sum())
            self.cat_counts[j] += np.bincount(slot[slot >= 0], minlength=width)
            if len(rows):
                picked, picked_missing = category_strings(arr[rows])
                values[:, j] = np.where(picked_missing, MISSING, picked)
        return values

    def _keep_smallest(self, keys: np.ndarray, num: np.ndarray, cat: np.ndarray) -> None:
        k = self.reservoir_size
        idx = np.argpartition(keys, k - 1)[:k] if len(keys) > k else np.arange(len(keys))
        idx = idx[np.argsort(keys[idx], kind="stable")]
        self.res_keys, self.res_numeric, self.res_categorical = keys[idx], num[idx], cat[idx]

    # -- merge ----------------------------------------------------------------------------

    def merge(self, other: WindowSketch) -> WindowSketch:
        """A new sketch of both windows' rows; neither input changes."""
        self._check_compatible(other)
        out = WindowSketch(self.profile, self.reservoir_size)
        # Seeded from copies of both generators, so merging advances neither input and
        # merge(a, b) and merge(b, a) continue with the same random stream.
        draws = sorted(int(copy.deepcopy(sk._rng).integers(0, 2**63)) for sk in (self, other))
        out._rng = np.random.default_rng(draws)
        out.rows = self.rows + other.rows
        for attr in (
            "num_counts",
            "num_missing",
            "num_type_error",
            "num_non_finite",
            "num_sum",
            "num_dev_sum",
            "num_dev_sumsq",
            "num_bin_sums",
            "cat_counts",
            "cat_missing",
            "absent",
        ):
            setattr(out, attr, getattr(self, attr) + getattr(other, attr))
        out.num_min = np.minimum(self.num_min, other.num_min)
        out.num_max = np.maximum(self.num_max, other.num_max)
        extra = dict(self.extra_columns)
        for name, count in other.extra_columns.items():
            if name in extra or len(extra) < MAX_EXTRA_COLUMNS:
                extra[name] = extra.get(name, 0) + count
        out.extra_columns = extra
        out.attribution = AttributionSample.merged(self.attribution, other.attribution)
        out._keep_smallest(
            np.concatenate([self.res_keys, other.res_keys]),
            np.concatenate([self.res_numeric, other.res_numeric]),
            np.concatenate([self.res_categorical, other.res_categorical]),
        )
        return out

    def _check_compatible(self, other: WindowSketch) -> None:
        if other.profile.content_hash != self.profile.content_hash:
            raise SketchMismatchError("cannot merge sketches built on different profiles")
        if other.reservoir_size != self.reservoir_size:
            raise SketchMismatchError(
                f"cannot merge reservoirs of size {self.reservoir_size} and {other.reservoir_size}"
            )

    def reservoir_frame(self) -> pd.DataFrame:
        """The reservoir's rows as a DataFrame with the schema's columns."""
        import pandas as pd  # the report's and explanations' path only

        data: dict[str, Any] = {}
        for j, name in enumerate(self.profile.numeric_names):
            data[name] = self.res_numeric[:, j]
        for j, name in enumerate(self.profile.categorical_names):
            data[name] = self.res_categorical[:, j]
        return pd.DataFrame(data, columns=self.profile.schema.names)

    # -- serialisation --------------------------------------------------------------------

    _ARRAYS = (
        "num_counts",
        "num_missing",
        "num_type_error",
        "num_non_finite",
        "num_min",
        "num_max",
        "num_sum",
        "num_dev_sum",
        "num_dev_sumsq",
        "num_bin_sums",
        "cat_counts",
        "cat_missing",
        "absent",
        "res_keys",
        "res_numeric",
    )

    def to_bytes(self) -> bytes:
        """Serialise exactly (for checkpoints): an .npz without pickles."""
        meta = {
            "profile": self.profile.content_hash,
            "reservoir_size": self.reservoir_size,
            "rows": self.rows,
            "extra_columns": self.extra_columns,
            "rng": self._rng.bit_generator.state,
            "res_categorical": [
                [None if v is None else str(v) for v in row]
                for row in self.res_categorical.tolist()
            ],
        }
        buf = io.BytesIO()
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        if self.attribution is not None:
            arrays.update(self.attribution.arrays())
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, profile: Profile, data: bytes) -> WindowSketch:
        """Restore a sketch saved by ``to_bytes`` against the same profile."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes())
                lacking = [name for name in cls._ARRAYS if name not in npz.files]
                if lacking:
                    raise KeyError(
                        f"no {', '.join(lacking)} (a checkpoint from an older driftline "
                        "cannot be resumed; its windows start afresh)"
                    )
                arrays = {name: npz[name] for name in cls._ARRAYS}
                logged = (
                    {k: npz[k] for k in ("att_shape", "att_keys", "att_values")}
                    if "att_shape" in npz.files
                    else None
                )
            built_on = str(meta["profile"])
        except Exception as exc:
            # Altered bytes fail anywhere in zipfile/numpy (BadZipFile, NotImplementedError
            # for a flipped flag bit, struct.error...): all of it means a corrupt checkpoint.
            raise ValueError(f"corrupt window sketch: {exc!r}") from exc
        if built_on != profile.content_hash:
            raise SketchMismatchError(
                f"sketch was built on reference {built_on[:12]}, not {profile.short_hash}"
            )
        try:
            out = cls(profile, int(meta["reservoir_size"]))
            out.rows = int(meta["rows"])
            out.extra_columns = {str(k): int(v) for k, v in meta["extra_columns"].items()}
            out._rng.bit_generator.state = meta["rng"]
            for name, arr in arrays.items():
                expected = getattr(out, name)
                if name.startswith("res_"):
                    ok = arr.ndim == expected.ndim and arr.shape[1:] == expected.shape[1:]
                else:
                    ok = arr.shape == expected.shape
                if not ok or arr.dtype != expected.dtype:
                    raise ValueError(f"{name} has shape {arr.shape}, not {expected.shape}")
                setattr(out, name, arr)
            kept = len(out.res_keys)
            rows = meta["res_categorical"]
            # Filled row by row: np.array() loses the (rows, 0) shape of a profile
            # without categorical columns.
            res_categorical = np.empty((kept, len(profile.categorical_names)), dtype=object)
            if len(rows) != kept or len(out.res_numeric) != kept or kept > out.reservoir_size:
                raise ValueError(f"reservoir of {kept} keys and {len(rows)} rows")
            for i, row in enumerate(rows):
                res_categorical[i, :] = row
            out.res_categorical = res_categorical
            if logged is not None:
                out.attribution = AttributionSample.from_arrays(logged)
                if out.attribution.k != out.reservoir_size:
                    raise ValueError("attribution sample and reservoir of different sizes")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"corrupt window sketch: {exc!r}") from exc
        return out

    def state_equal(self, other: WindowSketch) -> bool:
        """Exact equality of every count, extreme, sum and the reservoir.

        Sums are compared exactly too: a sketch and its checkpoint are equal, while the
        same rows added in another grouping may differ in the last bits of the sums.
        """
        if self.rows != other.rows or self.extra_columns != other.extra_columns:
            return False
        if not AttributionSample.same(self.attribution, other.attribution):
            return False
        for name in self._ARRAYS:
            if not np.array_equal(getattr(self, name), getattr(other, name), equal_nan=True):
                return False
        return bool(
            self.res_categorical.shape == other.res_categorical.shape
            and (self.res_categorical == other.res_categorical).all()
        )


def _shift(mean: float, std: float) -> float:
    """The reference mean rounded to a multiple of the power of two just below its standard
    deviation: as close as matters for precision, and coarse enough that ``x − shift`` is
    exact wherever ``x`` is on a coarser grid (values that are multiples of 1/4, say, keep
    sums that are exact in any order, so merged sketches equal direct ones bit for bit)."""
    if not math.isfinite(mean):
        return 0.0
    if not (math.isfinite(std) and std > 0):
        return float(mean)  # a constant column: its deviations are exactly 0
    grain = 2.0 ** math.floor(math.log2(std))
    return float(round(mean / grain) * grain)


def _columns(batch: Batch) -> Mapping[str, Any]:
    pd = sys.modules.get("pandas")  # without pandas loaded, no batch is a DataFrame
    if pd is not None and isinstance(batch, pd.DataFrame):
        return {str(c): batch[c].to_numpy() for c in batch.columns}
    return batch


def _batch_len(columns: Mapping[str, Any]) -> int:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"batch columns have different lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def _numeric_values(raw: Any) -> tuple[np.ndarray, int]:
    """float64 values with NaN for missing, and the number of values of the wrong type."""
    arr = np.asarray(raw)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False), 0
    if arr.dtype == object and set(map(type, arr.tolist())) <= _PLAIN_NUMBERS:
        try:  # numbers and None only: float64 with NaN for None, as pandas.to_numeric
            return arr.astype(np.float64), 0
        except OverflowError:  # an integer beyond float64: pandas decides
            pass
    import pandas as pd  # text or other objects in a numeric column: pandas' parsing

    series = pd.Series(arr, dtype=object)
    x = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    type_errors = int((np.isnan(x) & series.notna().to_numpy()).sum())
    return x, type_errors


def _text_slots(arr: np.ndarray, slots: dict[str, int], unseen: int) -> np.ndarray:
    """Bin of every text value of ``arr`` (``unseen`` for text the profile does not know);
    -1 where the value is not text (missing, a number) or cannot be hashed.

    Known text is looked up in one C loop; the rest (unseen text, missing values,
    numbers) once per distinct value. A ``str`` subclass found in ``slots`` takes its
    slot here, as ``category_strings`` would give it.
    """
    n = len(arr)
    try:
        slot = np.fromiter(map(slots.get, arr, repeat(-1, n)), dtype=np.int64, count=n)
    except TypeError:  # an unhashable value (a list or dict): the slow path decides
        return np.full(n, -1, dtype=np.int64)
    if arr.dtype == object:
        rest = np.flatnonzero(slot < 0)
        if len(rest):
            items = arr[rest].tolist()
            lookup = {v: unseen if type(v) is str else -1 for v in dict.fromkeys(items)}
            slot[rest] = np.fromiter(
                map(lookup.__getitem__, items), dtype=np.int64, count=len(items)
            )
    return slot


# Objects a numeric column may hold that float64 takes as pandas.to_numeric does.
_PLAIN_NUMBERS = frozenset({float, int, type(None)})


_SLOT_CACHE: dict[tuple[str, str], dict[str, int]] = {}


def _category_slots(profile: Profile, name: str) -> dict[str, int]:
    """Category text -> bin of the stacked count matrix, for one column (cached).

    Vocabulary categories map to their index, the reference's other known categories to
    the "other" bin (``width - 2``); anything absent is unseen or needs normalising.
    """
    key = (profile.content_hash, name)
    slots = _SLOT_CACHE.get(key)
    if slots is None:
        cp = profile.categorical[name]
        other = profile.categorical_width - 2
        slots = dict.fromkeys(cp.known, other)
        slots.update({cat: i for i, cat in enumerate(cp.vocabulary)})
        if len(_SLOT_CACHE) > 4096:
            _SLOT_CACHE.clear()
        _SLOT_CACHE[key] = slots
    return slots
