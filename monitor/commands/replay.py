"""driftline replay: the agent's code path over a file, one WindowReport per line on stdout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from monitor.commands.common import UsageError, err, error_exit, progress_bar


def _config_for(args: argparse.Namespace):
    from monitor.config.loader import load_config
    from monitor.config.model import MonitorConfig

    if args.config:
        cfg = load_config(args.config)
        updates: dict[str, Any] = {}
        if getattr(args, "reference", None):
            updates["reference"] = Path(args.reference)
        if getattr(args, "window", None):
            # --window N turns the configured windows into N-row windows, validated anew.
            windows = cfg.windows.model_dump(exclude_unset=True, exclude={"size", "slide"})
            updates["windows"] = type(cfg.windows).model_validate({**windows, "rows": args.window})
        return cfg.model_copy(update=updates) if updates else cfg
    if not getattr(args, "reference", None):
        raise UsageError("--reference is required without -c/--config: name the profile")
    if not getattr(args, "input", None):
        raise UsageError("--input is required without -c/--config: name the file to replay")
    return MonitorConfig.for_replay(
        reference=Path(args.reference), input_path=Path(args.input), window_rows=args.window
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from detectors.profile import ProfileError, load_profile
    from monitor.config.errors import ConfigError
    from monitor.report.verdict import findings
    from monitor.runtime.replay import replay

    cfg = _config_for(args)
    if args.model or getattr(args, "attributions", None):
        from monitor.explain.cli import with_model

        cfg = with_model(cfg, args)
    try:
        profile = load_profile(cfg.reference)
        cfg.check_against_profile(profile)
    except (ProfileError, ConfigError) as exc:
        return error_exit(exc)
    if args.input:
        path = Path(args.input)
    elif cfg.source.file is not None:
        path = cfg.source.file.path  # the file the configuration names
    else:
        raise UsageError(
            f"{args.config}: no file to replay: pass --input FILE or set source.file.path"
        )
    if not path.exists():
        return error_exit(f"{path}: no such file")
    sketches = Path(args.sketches) if args.sketches else None
    out = sys.stdout.buffer
    windows = 0
    found: dict[str, int] = {}
    with progress_bar() as progress:
        task = progress.add_task(f"replaying {path.name}", total=None)
        try:
            labels = _labels_for(cfg, args)
            for report in replay(
                cfg,
                profile,
                path,
                progress=lambda n: progress.advance(task, n),
                labels=labels,
                sketches=sketches,
            ):
                out.write(report.to_json() + b"\n")
                out.flush()
                windows += 1
                for finding in findings(report):
                    found[finding] = found.get(finding, 0) + 1
        except ValueError as exc:
            return error_exit(exc)
    err.print(replay_summary(windows, found))
    if sketches is not None:
        err.print(f"window sketches in {sketches}/ (driftline report --sketches {sketches})")
    return 0


def replay_summary(windows: int, found: dict[str, int]) -> str:
    """ "12 windows: 3 with feature drift, 0 with prediction drift, 1 with a data-quality
    breach" (multivariate drift too when a window had it)."""
    from monitor.report.verdict import (
        FEATURE_DRIFT,
        MULTIVARIATE_DRIFT,
        PREDICTION_DRIFT,
        QUALITY_BREACH,
    )

    kinds = [FEATURE_DRIFT, PREDICTION_DRIFT]
    if found.get(MULTIVARIATE_DRIFT):
        kinds.append(MULTIVARIATE_DRIFT)
    parts = [f"{found.get(k, 0)} with {k}" for k in kinds]
    parts.append(f"{found.get(QUALITY_BREACH, 0)} with a {QUALITY_BREACH}")
    return f"{windows} windows: " + ", ".join(parts)


def _labels_for(cfg, args: argparse.Namespace):
    """The labels of ``--labels FILE`` (or ``labels.file``), or None."""
    from monitor.labels.files import read_labels

    path = Path(args.labels) if args.labels else cfg.labels.file
    if path is None:
        return None
    labels = read_labels(path, cfg.labels, cfg.kpis)
    if labels.failures:
        err.print(f"{path}: {len(labels.failures)} label records set aside (unreadable)")
    return labels
