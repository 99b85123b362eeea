"""Attribution drift from attributions the records logged (``explain.source: record``):
no model file, no explainer. The decoder reads each record's attributions
(monitor/ingest/attributions.py), the window's sketch keeps a bounded sample of them by
the reservoir's row keys (detectors/attribution_sample.py: merged, checkpointed and sent
in partials with the rest of the window), and when the window closes its block is judged
exactly as for a model's attributions (detectors/attribution.py).

The reference side comes from the profile: built from the training data's logged
attributions (``driftline reference build --attributions COLUMN``) or with the model file
(``--model FILE``); either way, the logged attributions must be in the same units.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from detectors.attribution import attribution_drift, attribution_profile
from detectors.profile import Profile
from detectors.results import AttributionResult, DriftResult
from detectors.settings import DriftSettings
from detectors.sketch import WindowSketch
from monitor.explain.loader import ModelLoadError
from monitor.explain.window import ExplainSettings
from monitor.ingest.attributions import AttributionField, frame_attributions, reason_counts

LOGGED_METHOD = "logged"
LOGGED_DEVICE = "record"


def record_field(profile: Profile, settings: ExplainSettings) -> AttributionField:
    """Where the decoder reads the attributions, and of which features (the profile's)."""
    reference = profile.attribution
    if reference is None:
        raise ModelLoadError(
            "explain.source is record, but the reference profile has no attributions; "
            "rebuild it with `driftline reference build ... --attributions COLUMN` (the "
            "training data's logged attributions) or `--model FILE`"
        )
    return AttributionField(settings.record_field, tuple(reference.features))


class LoggedAttributor:
    """Judges closed windows on the attributions their records logged."""

    def __init__(
        self,
        profile: Profile,
        settings: ExplainSettings,
        on_skip: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.field = record_field(profile, settings)
        assert profile.attribution is not None
        self.profile = profile
        self.reference = profile.attribution
        self.settings = settings
        self.on_skip = on_skip
        self.clock = clock
        self.skipped: Counter[str] = Counter()

    @classmethod
    def from_settings(
        cls,
        profile: Profile,
        settings: ExplainSettings,
        on_skip: Callable[[str], None] | None = None,
    ) -> LoggedAttributor:
        return cls(profile, settings, on_skip=on_skip)

    def evaluate(
        self, sketch: WindowSketch, drift: DriftSettings, features: DriftResult | None
    ) -> AttributionResult | None:
        """The window's attribution block, or None when too few of its records logged
        readable attributions (counted as ``too_few_rows``)."""
        started = self.clock()
        sample = sketch.attribution
        values = (
            sample.values if sample is not None else np.empty((0, len(self.reference.features)))
        )
        if self.settings.max_rows is not None:
            values = values[: self.settings.max_rows]
        if len(values) < self.settings.min_rows:
            self.skipped["too_few_rows"] += 1
            if self.on_skip is not None:
                self.on_skip("too_few_rows")
            return None
        return attribution_drift(
            self.reference,
            values,
            drift,
            features,
            self.settings.attribution,
            floor_key=self.profile.content_hash,
            seconds=self.clock() - started,
            device=LOGGED_DEVICE,
        )


def with_logged_reference(profile: Profile, frame: pd.DataFrame, spec: str) -> Profile:
    """``profile`` plus the attribution block of the training data's logged attributions
    (``spec``: a column of objects or arrays, or ``PREFIX*`` for one column per feature;
    see :func:`monitor.ingest.attributions.frame_attributions`), on every row that has
    readable ones. Their features: the profile's features an object names (other keys
    are ignored), all of the profile's features, in schema order, for arrays, and those
    with a ``PREFIX<feature>`` column."""
    names = logged_features(profile, frame, spec)
    try:
        values, codes, _ = frame_attributions(frame, spec, names)
    except ValueError as exc:
        raise ModelLoadError(f"--attributions {spec}: {exc}") from None
    if not np.isfinite(values).all(axis=1).any():
        left_out = reason_counts(codes)
        raise ModelLoadError(
            f"--attributions {spec}: no row has readable attributions of {list(names)} "
            f"(rows left out: {', '.join(f'{k} {v}' for k, v in left_out.items())})"
        )
    reference = attribution_profile(
        names, values, method=LOGGED_METHOD, library="", expected_value=0.0, bins=profile.bins
    )
    return replace(profile, attribution=reference)


def logged_features(profile: Profile, frame: pd.DataFrame, spec: str) -> tuple[str, ...]:
    """The features whose attributions ``spec`` holds (see :func:`with_logged_reference`)."""
    schema = tuple(c.name for c in profile.schema.features())
    if spec.endswith("*"):
        names = tuple(f for f in schema if spec[:-1] + f in frame.columns)
        if not names:
            raise ModelLoadError(
                f"--attributions {spec}: no column {spec[:-1]}<feature> for any of the "
                f"features {list(schema)}"
            )
        return names
    field = AttributionField(spec, schema)
    if field.head not in frame.columns:
        raise ModelLoadError(
            f"--attributions {spec}: the data has no column {field.head!r}; name the column "
            "holding each row's attributions (an object or an array), or PREFIX* for one "
            "column per feature"
        )
    first = next(
        (v for v in (field.below_head(_cell(c)) for c in frame[field.head]) if v is not None),
        None,
    )
    if isinstance(first, dict):
        names = tuple(f for f in schema if f in first)
        if not names:
            raise ModelLoadError(
                f"--attributions {spec}: the first row's attributions name none of the "
                f"features {list(schema)}"
            )
        return names
    if isinstance(first, list):
        if len(first) != len(schema):
            raise ModelLoadError(
                f"--attributions {spec}: arrays of {len(first)} values, the profile has "
                f"{len(schema)} features {list(schema)}; log an object of feature to value"
            )
        return schema
    raise ModelLoadError(
        f"--attributions {spec}: no row holds an object or an array of attributions"
    )


def _cell(v: object) -> object:
    return v.tolist() if isinstance(v, np.ndarray) else v


__all__ = ["LoggedAttributor", "logged_features", "record_field", "with_logged_reference"]
