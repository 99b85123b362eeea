"""driftline reference build: profile a training set, with its labels and model when given."""

from __future__ import annotations

import argparse
from pathlib import Path

from monitor.commands.common import UsageError, err, error_exit, progress_bar

DASK_HELP = "build on a Dask cluster: 'local' or a scheduler address (--data may be a glob)"


def cmd_reference_build(args: argparse.Namespace) -> int:
    from detectors.calibration import calibrate
    from detectors.profile import ProfileError, build_profile, read_frame
    from detectors.reference_laws import with_reference_laws
    from detectors.schema import Schema, SchemaError
    from detectors.sequential_calibration import calibrate_sequential

    if getattr(args, "dask", None) and getattr(args, "attributions", None):
        raise UsageError("--attributions is not read on a Dask cluster; build without --dask")
    if getattr(args, "dask", None):  # on a Dask cluster (monitor/offline/dask_build.py)
        from monitor.offline.dask_build import run_cli

        return run_cli(args, _load_schema, error_exit, err)
    steps = 3 + len(args.calibrate_window)
    with progress_bar() as progress:
        task = progress.add_task("reading data", total=steps)
        logged = read_frame(args.data)
        from monitor.explain.cli import without_logged_columns

        frame = without_logged_columns(logged, args)  # logged attributions are no features
        progress.update(task, advance=1, description=f"profiling {len(frame):,} rows")
        schema = None
        if args.schema:
            schema = _load_schema(Path(args.schema))
        prediction = args.prediction.split(",") if args.prediction else None
        try:
            profile = build_profile(
                frame.drop(columns=[args.labels]) if args.labels in frame.columns else frame,
                schema,
                prediction=prediction,
                bins=args.bins,
                top_k=args.top_k,
                sample_rows=args.sample_rows,
            )
        except (SchemaError, ValueError) as exc:
            raise ProfileError(f"{args.data}: {exc}") from None
        progress.update(task, advance=1)
        for rows in args.calibrate_window:
            progress.update(task, description=f"calibrating thresholds for {rows:,}-row windows")
            try:
                cal = calibrate(
                    profile, frame, rows, false_alarm_rate=args.false_alarm_rate, draws=args.draws
                )
            except ValueError as exc:
                return error_exit(exc)
            profile = profile.with_calibration(cal)
            progress.update(task, advance=1)
        progress.update(task, description="simulating run lengths and no-change laws")
        try:
            seq = calibrate_sequential(
                profile, frame, pane_rows=args.sequential_pane_rows, panes=args.sequential_panes
            )
        except ValueError as exc:
            return error_exit(f"--sequential-pane-rows/--sequential-panes: {exc}")
        profile = with_reference_laws(profile.with_sequential(seq))  # not in a window
        progress.update(task, advance=1)
        if args.model:
            from monitor.explain.cli import with_reference_attributions

            progress.update(task, description=f"attributions of {Path(args.model).name}")
            profile = with_reference_attributions(profile, args)
        if getattr(args, "attributions", None):
            from monitor.explain.cli import with_logged_attributions

            progress.update(task, description=f"logged attributions in {args.attributions}")
            profile = with_logged_attributions(profile, logged, args)
            kept = profile.attribution.rows if profile.attribution is not None else 0
            err.print(
                f"attributions: {kept:,} rows with readable ones in {args.attributions} "
                f"({len(logged) - kept:,} left out: missing or malformed)"
            )
    if args.labels:
        profile = _with_performance(profile, frame, args)
    if profile.inference:
        err.print("[bold]schema inferred[/] (pass --schema to fix it):")
        for name, why in profile.inference.items():
            err.print(f"  {name}: {why}")
    try:
        out = profile.save(args.output)
    except OSError as exc:
        raise ProfileError(f"{args.output}: cannot write profile: {exc.strerror}") from exc
    err.print(
        f"wrote {out} ({len(profile.schema.columns)} columns, {profile.rows:,} rows, "
        f"reference {profile.short_hash})"
    )
    _ = Schema  # schema files are parsed by _load_schema
    return 0


def _with_performance(profile, frame, args: argparse.Namespace):
    """The profile with what the performance estimators learn from the label column."""
    from dataclasses import replace

    from detectors.performance import PerformanceError, learn_performance
    from detectors.profile import ProfileError

    try:
        perf = learn_performance(
            profile,
            frame,
            args.labels,
            threshold=args.threshold,
            chunk_rows=args.performance_chunk_rows,
        )
    except PerformanceError as exc:
        raise ProfileError(f"{args.data}: --labels {args.labels}: {exc}") from None
    err.print(
        f"performance: {perf.task} model, estimators learnt from {perf.rows:,} labelled rows "
        f"({perf.chunk_rows:,}-row reference chunks)"
    )
    return replace(profile, performance=perf)


def _load_schema(path: Path):
    import yaml

    from detectors.schema import Schema, SchemaError
    from monitor.config.safe_yaml import YAMLLimitError, load_yaml

    try:
        data = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError, YAMLLimitError) as exc:
        raise UsageError(f"{path}: cannot read schema: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a schema is a mapping with numeric/categorical/prediction")
    unknown = set(data) - {"numeric", "categorical", "prediction", "prediction_categorical"}
    if unknown:
        raise UsageError(
            f"{path}: unknown schema keys {sorted(unknown)}; use numeric, categorical, "
            "prediction (numeric predictions) and prediction_categorical"
        )
    try:
        return Schema.build(
            numeric=data.get("numeric", []),
            categorical=data.get("categorical", []),
            prediction_numeric=data.get("prediction", []),
            prediction_categorical=data.get("prediction_categorical", []),
        )
    except SchemaError as exc:
        raise UsageError(f"{path}: {exc}") from None
