"""What a reference's noise floors need that depends on the reference alone, computed once.

The Wasserstein floor's bridge law (detectors/bridge_floor.py) is a simulation of 20 000
Brownian bridges over every numeric column's bins: about a second on one core, and
several on a busy one. It depends only on the profile (its bins, bin means, range and
row sample), so ``reference build`` simulates it and the profile keeps it
(``Profile.bridge_law``); a profile built before that (or by ``build_profile`` alone) has
it simulated once, when the evaluator starts (``prepare``), not in the first window's
evaluation. Either way it is the same simulation (same bridges, seed and inputs), so the
floors, intervals and verdicts are the same to the last bit (docs/architecture.md,
decision 10).

The laws simulated here are kept per profile content hash, apart from the size-bounded
cache of per-window-size floors (detectors/null_laws.py), so a long run with many
window sizes never evicts them.
"""

from __future__ import annotations

import threading

import numpy as np

from detectors.bridge_floor import DEFAULT_SIMULATIONS, BridgeLaw, bridge_law
from detectors.null_laws import DEFAULT_SEED, StoredLaw
from detectors.profile import Profile
from detectors.sketch import WindowSketch
from detectors.stats import NumericBins

# Profiles whose simulated laws are kept (an agent holds one or two references).
_MEMO_SIZE = 8
_memo: dict[tuple[str, int, int], BridgeLaw] = {}
_memo_lock = threading.Lock()


def reference_sample(profile: Profile) -> np.ndarray | None:
    """The profile's raw numeric rows, (columns × rows) with NaN for missing or
    non-finite values, or None when the sample does not hold every numeric column: what
    shows each bin's spread in the bridge law."""
    names = profile.numeric_names
    if not names or not all(c in profile.sample for c in names):
        return None
    x = np.stack([np.asarray(profile.sample[c], dtype=np.float64) for c in names])
    return np.where(np.isfinite(x), x, np.nan)


def reference_bins(profile: Profile) -> NumericBins:
    """The reference side of every numeric column (the window side empty): all the bridge
    law reads."""
    return NumericBins.from_profile(profile, WindowSketch(profile, reservoir_size=0))


def simulate_bridge_law(
    profile: Profile, simulations: int = DEFAULT_SIMULATIONS, seed: int = DEFAULT_SEED
) -> StoredLaw:
    """The bridge law of ``profile``'s numeric columns, in the form a profile keeps."""
    law = bridge_law(
        reference_bins(profile),
        sample=reference_sample(profile),
        simulations=simulations,
        seed=seed,
    )
    return StoredLaw(simulations, seed, law.tail, law.mean_square, law.empty)


def with_reference_laws(profile: Profile) -> Profile:
    """``profile`` holding every law that depends on it alone (what ``reference build``
    stores), so that no window, and no start-up, has to simulate it."""
    return profile.with_bridge_law(simulate_bridge_law(profile))


def stored_bridge_law(
    profile: Profile, simulations: int = DEFAULT_SIMULATIONS, seed: int = DEFAULT_SEED
) -> BridgeLaw | None:
    """The profile's own bridge law when it was simulated as a window would simulate it
    (same bridges and seed, one entry per numeric column); else None."""
    stored = profile.bridge_law
    if (
        stored is None
        or stored.simulations != simulations
        or stored.seed != seed
        or len(stored.empty) != len(profile.numeric_names)
    ):
        return None
    return BridgeLaw(stored.tail, stored.mean_square, stored.empty)


def bridge_law_for(
    profile: Profile, simulations: int = DEFAULT_SIMULATIONS, seed: int = DEFAULT_SEED
) -> BridgeLaw:
    """The bridge law of ``profile``: the stored one, else the one simulated for it
    earlier in this process, else simulated now (and kept)."""
    stored = stored_bridge_law(profile, simulations, seed)
    if stored is not None:
        return stored
    key = (profile.content_hash, simulations, seed)
    with _memo_lock:
        hit = _memo.get(key)
    if hit is not None:
        return hit
    fresh = simulate_bridge_law(profile, simulations, seed)
    law = BridgeLaw(fresh.tail, fresh.mean_square, fresh.empty)
    with _memo_lock:
        while len(_memo) >= _MEMO_SIZE:
            _memo.pop(next(iter(_memo)))
        _memo[key] = law
    return law


def prepare(profile: Profile) -> None:
    """Have every reference-only law ready before the first window (the evaluator calls
    this at start-up): a no-op for a profile that stores them."""
    if profile.numeric_names:
        bridge_law_for(profile)


def forget() -> None:
    """Drop the laws simulated in this process (tests)."""
    with _memo_lock:
        _memo.clear()
