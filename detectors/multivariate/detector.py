"""Runs the configured row-level tests on a closed window (docs/architecture.md,
"Multivariate drift").

The reference side (encoder fitted on the profile's row sample, its encoded rows) is
prepared once; each window encodes its reservoir the same way and runs MMD, the
classifier test or both within the time budget. A window that cannot be tested (too few
rows, budget exceeded, a device error) gets no result and a reason instead: skipped,
never silent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from detectors.multivariate.backend import BudgetExceeded, device_label, resolve_device
from detectors.multivariate.classifier import classifier_test
from detectors.multivariate.mmd import mmd_test
from detectors.multivariate.online_mmd import OnlineMMD
from detectors.multivariate.preprocess import (
    RowEncoder,
    reference_rows,
    top_features,
    window_rows,
)
from detectors.multivariate.result import MultivariateResult, MultivariateTest
from detectors.multivariate.settings import MultivariateSettings
from detectors.profile import Profile
from detectors.sketch import WindowSketch

# Features scoring at least this share of the strongest are named.
FEATURE_SHARE = 0.3


@dataclass(frozen=True)
class Outcome:
    """A window's multivariate result, or why there is none (``reason_code``, for the
    skipped-windows counter: too_few_rows, budget or error)."""

    result: MultivariateResult | None
    skipped_reason: str | None = None
    reason_code: str | None = None


def bonferroni(p_values: list[float | None]) -> float | None:
    """``min(1, k · min p)`` over the ``k`` tests run (an undefined p-value counts as 1);
    None when no test defines one."""
    defined = [p for p in p_values if p is not None]
    if not defined:
        return None
    return min(1.0, len(p_values) * min(defined))


class MultivariateDetector:
    """The reference side of the tests, fixed at start-up."""

    def __init__(self, profile: Profile, settings: MultivariateSettings) -> None:
        self.settings = settings
        ref = reference_rows(profile, limit=settings.reference_rows, seed=settings.seed)
        self.encoder = RowEncoder.fit(ref, top_k=settings.top_k)
        self.reference = self.encoder.transform(ref)
        self.device = resolve_device(settings.device)

    def online(self) -> OnlineMMD:
        """A fresh online detector on (a part of) the reference rows."""
        o = self.settings.online
        ref = self.reference[: o.reference_rows * 2]
        return OnlineMMD(
            ref,
            window=o.window,
            expected_run_time=o.expected_run_time,
            simulations=o.simulations,
            scales=self.settings.kernel_scales,
            seed=self.settings.seed,
        )

    def evaluate(self, sketch: WindowSketch, seed: int | None = None) -> Outcome:
        s = self.settings
        rows = window_rows(sketch)
        n = len(rows)
        if n < s.min_rows:
            return Outcome(
                None,
                f"{n} rows in the window's sample, fewer than min_rows={s.min_rows}",
                "too_few_rows",
            )
        if len(self.reference) < s.min_rows:
            return Outcome(
                None,
                f"{len(self.reference)} reference rows in the profile, fewer than "
                f"min_rows={s.min_rows}; rebuild it with a larger --sample-rows",
                "too_few_rows",
            )
        y = self.encoder.transform(rows)
        started = time.perf_counter()
        seed = s.seed if seed is None else seed
        tests: list[MultivariateTest] = []
        try:
            if s.test in ("mmd", "both"):
                tests.append(self._mmd(y, seed, started))
            if s.test in ("classifier", "both"):
                tests.append(self._classifier(y, seed, started))
        except BudgetExceeded as exc:
            return Outcome(None, str(exc), "budget")
        except (RuntimeError, MemoryError) as exc:  # e.g. CUDA out of memory
            return Outcome(None, f"{type(exc).__name__}: {str(exc)[:200]}", "error")
        best = min(tests, key=lambda t: 1.0 if t.p_value is None else t.p_value)
        p_value = bonferroni([t.p_value for t in tests])
        drifted = p_value is not None and p_value < s.alpha
        named = next((t.features for t in tests if t.test == "classifier"), best.features)
        return Outcome(
            MultivariateResult(
                test=s.test,
                statistic=best.statistic,
                p_value=p_value,
                threshold=best.threshold,
                drifted=drifted,
                device=device_label(self.device) if s.test != "classifier" else "numpy",
                seconds=time.perf_counter() - started,
                rows_window=n,
                rows_reference=len(self.reference),
                features=named if drifted else (),
                tests=tuple(tests) if len(tests) > 1 else (),
            )
        )

    def _left(self, started: float) -> float:
        return max(0.0, self.settings.budget_seconds - (time.perf_counter() - started))

    def _alpha(self) -> float:
        """Each test's level: Bonferroni over the tests run."""
        return self.settings.alpha / (2 if self.settings.test == "both" else 1)

    def _mmd(self, y: np.ndarray, seed: int, started: float) -> MultivariateTest:
        r = mmd_test(
            self.reference,
            y,
            permutations=self.settings.permutations,
            alpha=self._alpha(),
            scales=self.settings.kernel_scales,
            seed=seed,
            device=self.device,
            budget_seconds=self._left(started),
        )
        drifted = r.p_value < self._alpha()
        scores = self.encoder.feature_scores(r.relevance)
        names = top_features(self.encoder.features, scores, FEATURE_SHARE) if drifted else []
        return MultivariateTest("mmd", r.statistic, r.p_value, r.threshold, drifted, tuple(names))

    def _classifier(self, y: np.ndarray, seed: int, started: float) -> MultivariateTest:
        r = classifier_test(
            self.reference,
            y,
            trees=self.settings.trees,
            alpha=self._alpha(),
            seed=seed,
            budget_seconds=self._left(started),
        )
        drifted = r.p_value < self._alpha()
        scores = self.encoder.feature_scores(r.importance)
        names = top_features(self.encoder.features, scores, FEATURE_SHARE) if drifted else []
        return MultivariateTest(
            "classifier", r.statistic, r.p_value, r.threshold, drifted, tuple(names)
        )
