"""``driftline``: one console script for the agent and its offline tools.

Commands print machine-readable results on stdout (JSON lines for reports) and progress
and diagnostics on stderr, so ``driftline replay ... > reports.jsonl`` just works.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import monitor
from monitor.explain.cli import add_model_arguments

err = Console(stderr=True)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class UsageError(Exception):
    """A command line that cannot work as given; the message says what to change."""


DASK_HELP = "build on a Dask cluster: 'local' or a scheduler address (--data may be a glob)"

def _error(problem: object) -> int:
    """Say what stops a command on stderr; 2 is the exit status of every such stop."""
    err.print(f"[red]error:[/] {escape(str(problem))}", soft_wrap=True, highlight=False)
    return 2


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def cmd_reference_build(args: argparse.Namespace) -> int:
    from detectors.calibration import calibrate
    from detectors.profile import ProfileError, build_profile, read_frame
    from detectors.reference_laws import with_reference_laws
    from detectors.schema import Schema, SchemaError
    from detectors.sequential_calibration import calibrate_sequential

    if getattr(args, "dask", None):  # on a Dask cluster (monitor/offline/dask_build.py)
        from monitor.offline.dask_build import run_cli

        return run_cli(args, _load_schema, _error, err)
    steps = 3 + len(args.calibrate_window)
    with _progress() as progress:
        task = progress.add_task("reading data", total=steps)
        frame = read_frame(args.data)
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
                return _error(exc)
            profile = profile.with_calibration(cal)
            progress.update(task, advance=1)
        progress.update(task, description="simulating run lengths and no-change laws")
        try:
            seq = calibrate_sequential(
                profile, frame, pane_rows=args.sequential_pane_rows, panes=args.sequential_panes
            )
        except ValueError as exc:
            return _error(f"--sequential-pane-rows/--sequential-panes: {exc}")
        profile = with_reference_laws(profile.with_sequential(seq))  # not in a window
        progress.update(task, advance=1)
        if args.model:
            from monitor.explain.cli import with_reference_attributions

            progress.update(task, description=f"attributions of {Path(args.model).name}")
            profile = with_reference_attributions(profile, args)
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
    if args.model:
        from monitor.explain.cli import with_model

        cfg = with_model(cfg, args)
    try:
        profile = load_profile(cfg.reference)
        cfg.check_against_profile(profile)
    except (ProfileError, ConfigError) as exc:
        return _error(exc)
    if args.input:
        path = Path(args.input)
    elif cfg.source.file is not None:
        path = cfg.source.file.path  # the file the configuration names
    else:
        raise UsageError(
            f"{args.config}: no file to replay: pass --input FILE or set source.file.path"
        )
    if not path.exists():
        return _error(f"{path}: no such file")
    sketches = Path(args.sketches) if args.sketches else None
    out = sys.stdout.buffer
    windows = 0
    found: dict[str, int] = {}
    with _progress() as progress:
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
            return _error(exc)
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


def cmd_run(args: argparse.Namespace) -> int:
    from detectors.profile import ProfileError
    from monitor.config.errors import ConfigError
    from monitor.config.loader import load_config
    from monitor.runtime.aggregator import run

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _error(exc)
    try:
        return run(cfg, role=args.role)
    except (ProfileError, ConfigError) as exc:
        return _error(exc)


def cmd_config_check(args: argparse.Namespace) -> int:
    from detectors.profile import ProfileError, load_profile
    from monitor.config.errors import ConfigError
    from monitor.config.loader import load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _error(exc)
    if not args.no_reference:
        try:
            cfg.check_against_profile(load_profile(cfg.reference))
        except (ProfileError, ConfigError) as exc:
            return _error(exc)
    sys.stdout.write(cfg.effective_yaml())
    err.print(f"{args.config}: ok")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo.live import run_demo

    return run_demo(duration=args.duration, rate=args.rate, port=args.port)


def cmd_report(args: argparse.Namespace) -> int:
    from detectors.profile import ProfileError, load_profile
    from detectors.sketch import WindowSketch
    from monitor.report import (
        ReportInputError,
        ReportSelectionError,
        parse_window_start,
        read_reports,
        render_report,
        select_report,
    )
    from monitor.report.store import artifact_paths

    try:
        profile = load_profile(args.reference)
        start = parse_window_start(args.window_start) if args.window_start is not None else None
        selection = select_report(
            read_reports(args.reports),
            window_start=start,
            index=args.index,
            model_version=args.model_version,
        )
        sketch_file = Path(args.sketch) if args.sketch else None
        if sketch_file is None and args.sketches:
            sketch_file = artifact_paths(args.sketches, selection.report).sketch
            if not sketch_file.exists():
                raise ReportSelectionError(
                    f"{args.sketches}: no sketch of this window ({sketch_file.name}); replay "
                    "the file with --sketches DIR to write them"
                )
        sketch = None
        if sketch_file is not None:
            sketch = WindowSketch.from_bytes(profile, sketch_file.read_bytes())
    except OSError as exc:
        return _error(f"{exc.filename}: {exc.strerror}")
    except (ProfileError, ReportSelectionError, ValueError) as exc:
        return _error(exc)
    report = selection.report
    with _progress() as progress:
        task = progress.add_task("rendering", total=None)

        def advance(description: str, done: int, total: int) -> None:
            progress.update(task, description=description, completed=done, total=total)

        try:
            page = render_report(
                report,
                profile,
                sketch=sketch,
                previous=selection.previous,
                history=selection.history,
                evidently=not args.no_evidently,
                evidently_note="Left out with --no-evidently." if args.no_evidently else None,
                progress=advance,
            )
        except ReportInputError as exc:
            return _error(exc)
    out = Path(args.output)
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        return _error(f"{out}: cannot write the report: {exc.strerror}")
    verdict = "drift" if report.drifted else "quality breach" if report.quality.breached else "ok"
    err.print(
        f"wrote {out} ({len(page) / 1e6:.1f} MB): {report.model} {report.model_version}, "
        f"window starting {report.window_start}, {verdict}"
    )
    return 0


def cmd_inject(args: argparse.Namespace) -> int:
    from monitor.inject import run_command

    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline", description="Streaming drift and data-quality monitoring for ML models."
    )
    parser.add_argument("--version", action="version", version=f"driftline {monitor.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    ref = sub.add_parser("reference", help="reference profiles").add_subparsers(
        dest="reference_command", required=True
    )
    build = ref.add_parser("build", help="profile a training/validation set")
    build.add_argument("--data", required=True, help="Parquet, CSV or JSONL file")
    build.add_argument("--schema", help="YAML with numeric/categorical/prediction lists")
    build.add_argument("--prediction", help="comma-separated prediction columns (when inferring)")
    build.add_argument("-o", "--output", required=True, help="profile file (.json or .json.gz)")
    build.add_argument("--bins", type=int, default=100, help="quantile bins per numeric column")
    build.add_argument("--top-k", type=int, default=100, help="categories kept per column")
    build.add_argument("--sample-rows", type=int, default=5000, help="rows kept for exact tests")
    build.add_argument("--dask", metavar="SCHEDULER", help=DASK_HELP)
    build.add_argument(
        "--calibrate-window",
        type=int,
        action="append",
        default=[],
        metavar="ROWS",
        help="calibrate thresholds for windows of ROWS rows (repeatable)",
    )
    build.add_argument(
        "--labels",
        metavar="COLUMN",
        help="the label column: learn the performance estimators (CBPE, DLE) from it",
    )
    build.add_argument(
        "--threshold", type=float, default=0.5, help="a binary model's decision threshold"
    )
    build.add_argument(
        "--performance-chunk-rows",
        type=int,
        metavar="ROWS",
        help="reference chunk size for the performance bands and thresholds",
    )
    build.add_argument("--false-alarm-rate", type=float, default=0.01)
    build.add_argument("--draws", type=int, default=200, help="reference chunks per calibration")
    build.add_argument(
        "--sequential-pane-rows",
        type=int,
        default=100,
        metavar="ROWS",
        help="rows per simulated window when calibrating the sequential detectors "
        "(about the smallest windows you expect)",
    )
    build.add_argument(
        "--sequential-panes",
        type=int,
        default=20_000,
        metavar="N",
        help="simulated windows per sequential calibration",
    )
    add_model_arguments(build)
    build.set_defaults(func=cmd_reference_build)

    rep = sub.add_parser("replay", help="window reports for a file, offline")
    rep.add_argument("-c", "--config", help="monitor.yaml (optional)")
    rep.add_argument("--reference", help="reference profile (overrides the config's)")
    rep.add_argument(
        "--input",
        help="JSONL records, or a Parquet/CSV/JSONL table (default: the config's source.file.path)",
    )
    rep.add_argument(
        "--sketches",
        metavar="DIR",
        help="write each window's sketch under DIR, for driftline report --sketches DIR",
    )
    rep.add_argument("--window", type=int, help="row-count windows of N rows")
    add_model_arguments(rep)
    rep.add_argument("--labels", metavar="FILE", help="labels joined to the records by request_id")
    rep.set_defaults(func=cmd_replay)

    run = sub.add_parser("run", help="run the agent")
    run.add_argument("-c", "--config", required=True)
    run.add_argument(
        "--role",
        choices=("none", "agent", "aggregator", "both"),
        help="override aggregation.role: publish partials (agent), merge them (aggregator)",
    )
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="embedded broker + drifting synthetic model + agent, live")
    demo.add_argument("--duration", type=float, default=90.0, help="seconds to run")
    demo.add_argument("--rate", type=int, default=2000, help="predictions per second")
    demo.add_argument("--port", type=int, default=9108, help="/metrics port (0: any free port)")
    demo.set_defaults(func=cmd_demo)

    html = sub.add_parser("report", help="self-contained HTML report of one window")
    html.add_argument("--reference", required=True, help="the reference profile the agent used")
    html.add_argument(
        "--reports", required=True, help="WindowReport JSON lines (replay output, report file)"
    )
    which = html.add_mutually_exclusive_group()
    which.add_argument(
        "--window-start", help="the window starting at T (epoch seconds, or ISO time)"
    )
    which.add_argument(
        "--index", type=int, help="the N-th report (0-based; negative counts from the end)"
    )
    which.add_argument("--latest", action="store_true", help="the last report (the default)")
    html.add_argument("--model-version", help="only reports of this model version")
    sketch_from = html.add_mutually_exclusive_group()
    sketch_from.add_argument("--sketch", help="the window's sketch file (current distributions)")
    sketch_from.add_argument(
        "--sketches", metavar="DIR", help="find the window's sketch in DIR (replay --sketches DIR)"
    )
    html.add_argument(
        "--no-evidently", action="store_true", help="leave Evidently's section out (faster)"
    )
    html.add_argument("-o", "--output", required=True, help="the HTML file to write")
    html.set_defaults(func=cmd_report)

    config = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", required=True
    )
    check = config.add_parser("check", help="validate and print the effective config")
    check.add_argument("-c", "--config", required=True)
    check.add_argument("--no-reference", action="store_true", help="skip loading the profile")
    check.set_defaults(func=cmd_config_check)

    inject = sub.add_parser("inject", help="Kubernetes sidecar injector").add_subparsers(
        dest="inject_command", required=True
    )
    serve = inject.add_parser("serve", help="serve the mutating admission webhook over TLS")
    serve.add_argument("--tls-cert", required=True, help="PEM certificate (chain) file")
    serve.add_argument("--tls-key", required=True, help="PEM private key file")
    serve.add_argument("--settings", help="injector.yaml (image, resources, Kafka defaults)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument(
        "--failure-policy",
        choices=("Ignore", "Fail"),
        help="answer to reviews that cannot be handled (overrides the settings file)",
    )
    serve.set_defaults(func=cmd_inject)
    prep = inject.add_parser("prepare", help="init step of an injected pod: write monitor.yaml")
    prep.add_argument("--output-dir", required=True, help="where monitor.yaml is written")
    prep.add_argument("--reference-url", help="http(s) URL of the reference profile")
    prep.add_argument("--reference-file", help="where the fetched profile is written")
    prep.add_argument("--reference-sha256", help="expected SHA-256 of the profile")
    prep.set_defaults(func=cmd_inject)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    from monitor.redaction import RedactingFormatter

    for handler in logging.getLogger().handlers:
        # no URL credentials in any log line, whichever library wrote it
        handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            return _error(exc)
        if isinstance(exc, OSError) and exc.filename is not None:
            return _error(f"{exc.filename}: {exc.strerror or exc}")
        raise


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix and carry their own message (file or key, and
    the fix): said in one line, exit 2, no traceback. Imported only when one is raised."""
    from detectors.profile import ProfileError
    from detectors.schema import SchemaError
    from monitor.config.errors import ConfigError
    from monitor.demo.broker import BrokerError
    from monitor.explain.loader import ModelLoadError
    from monitor.outputs.server import PortInUseError

    return (
        UsageError,
        ProfileError,
        SchemaError,
        ConfigError,
        BrokerError,
        PortInUseError,
        ModelLoadError,
    )


if __name__ == "__main__":
    sys.exit(main())
