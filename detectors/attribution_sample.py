"""A window's sample of logged attributions: the bottom-k of the rows that carried
readable attributions, by the same row keys as the sketch's reservoir.

Models that log their own SHAP values (docs/explainability.md, "Attributions in the
records") give the window a matrix of attributions per row; this keeps a uniform sample of
the rows that had them, bounded at k rows whatever the traffic, and mergeable like the
reservoir: the k smallest keys of both sides are the sample the union would have kept
(docs/architecture.md, "Sketches"). Keyed by row ids, the rows kept are the reservoir's
own rows whenever every row logged its attributions, so logged attributions are judged on
the very rows an explainer would have explained. Rows whose attributions could not be
read never enter it (they are counted where they were decoded), so a stream that logs
attributions for a fraction of its predictions still gives a full sample of those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from detectors.profile import Profile


class AttributionSample:
    """Up to ``k`` rows of attributions (``values``, rows × ``width``) with their keys in
    [0, 1), smallest first; ``rows`` counts every row with attributions seen."""

    def __init__(self, k: int, width: int) -> None:
        if k < 0 or width < 0:
            raise ValueError(f"an attribution sample of {k} rows of {width} values")
        self.k = k
        self.width = width
        self.rows = 0
        self.keys = np.empty(0, dtype=np.float64)
        self.values = np.empty((0, width), dtype=np.float64)

    @classmethod
    def of(cls, profile: Profile, k: int) -> AttributionSample:
        """An empty sample of the profile's attribution features (ValueError without)."""
        if profile.attribution is None:
            raise ValueError("attributions for a profile without an attribution block")
        return cls(k, len(profile.attribution.features))

    @staticmethod
    def merged(
        a: AttributionSample | None, b: AttributionSample | None
    ) -> AttributionSample | None:
        """A new sample of both sides (either may have none)."""
        if a is None or b is None:
            one = b if a is None else a
            return None if one is None else one.merge(AttributionSample(one.k, one.width))
        return a.merge(b)

    @staticmethod
    def same(a: AttributionSample | None, b: AttributionSample | None) -> bool:
        return (a is None and b is None) or (a is not None and a.equal(b))

    def update(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add rows (``keys`` as the reservoir's, ``values`` rows × width); rows that
        are not all finite are skipped."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.width or len(values) != len(keys):
            raise ValueError(
                f"attributions of shape {values.shape} for {len(keys)} rows of {self.width}"
            )
        good = np.isfinite(values).all(axis=1)
        self.rows += int(good.sum())
        self._keep_smallest(
            np.concatenate([self.keys, np.asarray(keys, dtype=np.float64)[good]]),
            np.concatenate([self.values, values[good]]),
        )

    def merge(self, other: AttributionSample) -> AttributionSample:
        """A new sample of both sides' rows."""
        if (other.k, other.width) != (self.k, self.width):
            raise ValueError(
                f"cannot merge attribution samples of {self.k}×{self.width} and "
                f"{other.k}×{other.width}"
            )
        out = AttributionSample(self.k, self.width)
        out.rows = self.rows + other.rows
        out._keep_smallest(
            np.concatenate([self.keys, other.keys]), np.concatenate([self.values, other.values])
        )
        return out

    def _keep_smallest(self, keys: np.ndarray, values: np.ndarray) -> None:
        k = self.k
        idx = np.argpartition(keys, k - 1)[:k] if len(keys) > k else np.arange(len(keys))
        idx = idx[np.argsort(keys[idx], kind="stable")]
        self.keys, self.values = keys[idx], values[idx]

    def equal(self, other: AttributionSample | None) -> bool:
        return (
            other is not None
            and (self.k, self.width, self.rows) == (other.k, other.width, other.rows)
            and np.array_equal(self.keys, other.keys)
            and np.array_equal(self.values, other.values)
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The state as arrays (for the sketch's .npz)."""
        return {
            "att_shape": np.array([self.k, self.width, self.rows], dtype=np.int64),
            "att_keys": self.keys,
            "att_values": self.values,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> AttributionSample:
        """The sample :meth:`arrays` saved; ValueError when they do not fit together."""
        k, width, rows = (int(x) for x in arrays["att_shape"])
        out = cls(k, width)
        keys = np.asarray(arrays["att_keys"], dtype=np.float64)
        values = np.asarray(arrays["att_values"], dtype=np.float64)
        if keys.ndim != 1 or values.shape != (len(keys), width) or len(keys) > k or rows < 0:
            raise ValueError(f"attribution sample of {len(keys)} keys and {values.shape} values")
        out.rows, out.keys, out.values = rows, keys, values
        return out


__all__ = ["AttributionSample"]
