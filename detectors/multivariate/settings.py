"""How the multivariate tests run: plain values, built by the agent from the
``multivariate:`` section of ``monitor.yaml`` (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.multivariate.mmd import DEFAULT_PERMUTATIONS, DEFAULT_SCALES

TESTS = ("mmd", "classifier", "both")


@dataclass(frozen=True)
class OnlineSettings:
    """The online MMD detector: ``window`` rows, alarms ``expected_run_time`` rows apart
    on unchanged data (rows it sees: ``sample_fraction`` of the traffic, chosen by
    request-id hash)."""

    enabled: bool = False
    window: int = 100
    expected_run_time: int = 5000
    simulations: int | None = None
    sample_fraction: float = 0.1
    reference_rows: int = 2000


@dataclass(frozen=True)
class MultivariateSettings:
    enabled: bool = False
    test: str = "both"
    device: str = "auto"
    reference_rows: int = 5000
    min_rows: int = 100
    permutations: int = DEFAULT_PERMUTATIONS
    alpha: float = 0.05
    budget_seconds: float = 30.0
    top_k: int = 10
    kernel_scales: tuple[float, ...] = DEFAULT_SCALES
    trees: int = 100
    seed: int = 0
    online: OnlineSettings = field(default_factory=OnlineSettings)

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise ValueError(f"multivariate test must be one of {', '.join(TESTS)}")
