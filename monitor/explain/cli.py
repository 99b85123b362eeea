"""The ``--model`` and ``--attributions`` options of ``driftline reference build`` and
``driftline replay``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

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
    group.add_argument(
        "--attributions",
        metavar="FIELD",
        help="attributions the data logged, no model file: the column (or record field, "
        "dotted) holding each row's {feature: value} object or array, or PREFIX* for one "
        "column per feature (e.g. shap_*)",
    )


def _one_source(args: argparse.Namespace) -> None:
    if getattr(args, "model", None) and getattr(args, "attributions", None):
        from monitor.commands.common import UsageError

        raise UsageError(
            "--model and --attributions both name where attributions come from; pass one"
        )


def without_logged_columns(frame: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    """The training data less the columns of logged attributions (they are not features)."""
    spec = getattr(args, "attributions", None)
    _one_source(args)
    if not spec:
        return frame
    if spec.endswith("*"):
        drop = [c for c in frame.columns if str(c).startswith(spec[:-1])]
    else:
        drop = [c for c in frame.columns if c == spec.split(".")[0]]
    return frame.drop(columns=drop)


def with_logged_attributions(
    profile: Profile, frame: pd.DataFrame, args: argparse.Namespace
) -> Profile:
    """The built profile plus the data's logged attributions, when --attributions is given."""
    if not getattr(args, "attributions", None):
        return profile
    from monitor.explain.logged import with_logged_reference

    return with_logged_reference(profile, frame, args.attributions)


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
    """``config`` with ``explain.model`` (and its options), or the logged attributions'
    field, taken from the command line."""
    _one_source(args)
    if getattr(args, "attributions", None):
        explain = type(config.explain).model_validate(
            {
                **config.explain.model_dump(exclude_unset=True, exclude={"model"}),
                "source": "record",
                "record_field": args.attributions,
            }
        )
        return config.model_copy(update={"explain": explain})
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
