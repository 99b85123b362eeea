"""Attributions in the serving path: the reference's at ``reference build --model``, each
window's on its reservoir rows when the window closes (in the evaluation worker thread,
docs/architecture.md decision 6), within a time budget.

The reservoir is a uniform sample of the window whose rows sit in random order (sorted
by random keys), so any prefix of it is a uniform sample too: rows are explained in
chunks until the budget runs out, and the window is judged on the rows explained so far
as long as there are at least ``min_rows`` of them. Otherwise the window is skipped and
counted (``driftline_attribution_windows_skipped_total``), never an error out of the loop.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from detectors.attribution import AttributionSettings, attribution_drift, attribution_profile
from detectors.profile import Profile
from detectors.results import AttributionResult, DriftResult
from detectors.settings import DriftSettings
from detectors.sketch import WindowSketch
from monitor.explain.explainers import Explainer, make_explainer
from monitor.explain.loader import LoadedModel, ModelLoadError, check_features, load_model

log = logging.getLogger(__name__)

DEFAULT_BUDGET_SECONDS = 2.0
DEFAULT_MIN_ROWS = 100
SKIP_REASONS = ("budget", "too_few_rows", "error")


@dataclass(frozen=True)
class ExplainSettings:
    """``explain:`` in monitor.yaml, as plain values (docs/configuration.md)."""

    source: str = "model"  # or "record": attributions logged at record_field (logged.py)
    record_field: str = "attributions"
    model: str | None = None
    format: str = "auto"
    explainer: str = "auto"
    device: str = "auto"
    budget_seconds: float = DEFAULT_BUDGET_SECONDS
    min_rows: int = DEFAULT_MIN_ROWS
    max_rows: int | None = None
    max_evals: int | None = None
    output: int | None = None
    features: tuple[str, ...] | None = None
    trust_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    threads: int | None = None
    tree_kernel: str = "auto"
    attribution: AttributionSettings = field(default_factory=AttributionSettings)


def load_for_profile(settings: ExplainSettings, profile: Profile) -> tuple[LoadedModel, Explainer]:
    """Load ``settings.model`` and its explainer, checked against the profile's features."""
    if settings.model is None:
        raise ModelLoadError("explain.model is not set (or pass --model FILE)")
    loaded = load_model(
        settings.model,
        format=settings.format,
        trust_pickle=settings.trust_pickle,
        trusted_types=settings.trusted_types,
        features=settings.features,
    )
    check_features(loaded, [c.name for c in profile.schema.features()])
    explainer = make_explainer(
        loaded,
        sample_frame(profile, loaded.features),
        method=settings.explainer,
        device=settings.device,
        output=settings.output,
        max_evals=settings.max_evals,
        threads=settings.threads,
        tree_kernel=settings.tree_kernel,
    )
    return loaded, explainer


def sample_frame(profile: Profile, features: tuple[str, ...]) -> pd.DataFrame:
    """The profile's row sample as the model's input frame."""
    missing = [f for f in features if f not in profile.sample]
    if missing:
        raise ModelLoadError(f"the reference profile keeps no sample of {missing}")
    return pd.DataFrame({f: profile.sample[f] for f in features}, columns=list(features))


def with_reference_attributions(profile: Profile, settings: ExplainSettings) -> Profile:
    """``profile`` plus the model's attributions on its row sample (reference build)."""
    loaded, explainer = load_for_profile(settings, profile)
    frame = sample_frame(profile, loaded.features)
    if len(frame) == 0:
        raise ModelLoadError("the reference profile keeps no rows to explain (--sample-rows 0)")
    values = explainer.explain(frame)
    reference = attribution_profile(
        loaded.features,
        values,
        method=explainer.method,
        library=loaded.library,
        expected_value=explainer.expected_value,
        bins=profile.bins,
        model_sha256=loaded.sha256,
        output=settings.output,
    )
    return replace(profile, attribution=reference)


class WindowAttributor:
    """Explains closed windows and judges their attribution drift against the profile's."""

    def __init__(
        self,
        profile: Profile,
        explainer: Explainer,
        settings: ExplainSettings,
        *,
        model_sha256: str = "",
        on_skip: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        reference = profile.attribution
        if reference is None:
            raise ModelLoadError(
                "the reference profile has no attributions; rebuild it with "
                "`driftline reference build ... --model FILE`"
            )
        if tuple(reference.features) != tuple(explainer.features):
            raise ModelLoadError(
                f"the profile's attributions are of {list(reference.features)}, the model "
                f"takes {list(explainer.features)}; rebuild the profile with this model"
            )
        if model_sha256 and reference.model_sha256 and model_sha256 != reference.model_sha256:
            raise ModelLoadError(
                f"{settings.model}: not the model the reference attributions were computed "
                f"with (sha256 {model_sha256[:12]}, profile has "
                f"{reference.model_sha256[:12]}); rebuild the profile with --model"
            )
        self.profile = profile
        self.reference = reference
        self.explainer = explainer
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
    ) -> WindowAttributor:
        loaded, explainer = load_for_profile(settings, profile)
        return cls(profile, explainer, settings, model_sha256=loaded.sha256, on_skip=on_skip)

    def evaluate(
        self, sketch: WindowSketch, drift: DriftSettings, features: DriftResult | None
    ) -> AttributionResult | None:
        """The window's attribution block, or None when it was skipped (and counted)."""
        frame = sketch.reservoir_frame()
        if self.settings.max_rows is not None:
            frame = frame.head(self.settings.max_rows)
        if len(frame) < self.settings.min_rows:
            self._skip("too_few_rows")
            return None
        started = self.clock()
        try:
            values = self._explain_within_budget(frame, started)
        except Exception as exc:  # a model that fails on a window must not stop the agent
            log.warning("attributions failed for a window: %s", type(exc).__name__)
            self._skip("error")
            return None
        if len(values) < self.settings.min_rows:
            self._skip("budget")
            return None
        return attribution_drift(
            self.reference,
            values,
            drift,
            features,
            self.settings.attribution,
            floor_key=self.profile.content_hash,
            seconds=self.clock() - started,
            device=self.explainer.device,
        )

    def _explain_within_budget(self, frame: pd.DataFrame, started: float) -> np.ndarray:
        """Chunks of rows until all are explained or the budget is spent; the first chunk
        is small, to measure the rate the later ones are sized by."""
        budget = self.settings.budget_seconds
        parts: list[np.ndarray] = []
        done = 0
        chunk = min(len(frame), max(self.settings.min_rows // 4, 16))
        while done < len(frame):
            t0 = self.clock()
            parts.append(self.explainer.explain(frame.iloc[done : done + chunk]))
            done += chunk
            elapsed = self.clock() - started
            left = budget - elapsed
            if left <= 0:
                break
            rate = chunk / max(self.clock() - t0, 1e-6)  # rows per second
            chunk = int(max(16, min(len(frame) - done, rate * left * 0.8)))
        return np.concatenate(parts) if parts else np.empty((0, len(self.explainer.features)))

    def _skip(self, reason: str) -> None:
        self.skipped[reason] += 1
        if self.on_skip is not None:
            self.on_skip(reason)
