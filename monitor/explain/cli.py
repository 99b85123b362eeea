"""The ``--model`` options of ``driftline reference build`` and ``driftline replay``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detectors.profile import Profile
    from monitor.config.model import MonitorConfig


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model FILE`` and the options that say how to read and explain it."""
    group = parser.add_argument_group("attributions (docs/explainability.md)")
    group.add_argument(
        "--model",
        metavar="FILE",
        help="model file to explain: XGBoost .json/.ubj, LightGBM .txt, scikit-learn .skops",
    )
    group.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a joblib/pickle model file (loading a pickle runs its code)",
    )
    group.add_argument(
        "--explainer",
        choices=("auto", "tree", "linear", "permutation", "kernel"),
        help="SHAP explainer (default: by model type)",
    )


def with_reference_attributions(profile: Profile, args: argparse.Namespace) -> Profile:
    """The built profile plus the model's attributions on its sample, when --model is given."""
    if not getattr(args, "model", None):
        return profile
    from monitor.explain.window import ExplainSettings
    from monitor.explain.window import with_reference_attributions as attach

    settings = ExplainSettings(
        model=args.model,
        explainer=args.explainer or "auto",
        trust_pickle=bool(args.trust_pickle),
    )
    return attach(profile, settings)


def with_model(config: MonitorConfig, args: argparse.Namespace) -> MonitorConfig:
    """``config`` with ``explain.model`` (and its options) taken from the command line."""
    if not getattr(args, "model", None):
        return config
    updates: dict[str, object] = {"model": Path(args.model)}
    if args.trust_pickle:
        updates["trust_pickle"] = True
    if args.explainer:
        updates["explainer"] = args.explainer
    explain = type(config.explain).model_validate(
        {**config.explain.model_dump(exclude_unset=True), **updates}
    )
    return config.model_copy(update={"explain": explain})
