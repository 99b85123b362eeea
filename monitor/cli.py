"""``driftline``: one console script for the agent and its offline tools.

Commands print machine-readable results on stdout (JSON lines for reports) and progress
and diagnostics on stderr, so ``driftline replay ... > reports.jsonl`` just works.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import monitor
from monitor.commands.common import LOG_FORMAT, UsageError, error_exit
from monitor.commands.operate import cmd_config_check, cmd_demo, cmd_inject, cmd_report, cmd_run
from monitor.commands.reference import (
    DASK_HELP,
    cmd_reference_build,
)
from monitor.commands.replay import cmd_replay
from monitor.explain.cli import add_model_arguments


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
    rep.add_argument("--labels", metavar="FILE", help="labels joined to the records by request_id")
    add_model_arguments(rep)
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
            return error_exit(exc)
        if isinstance(exc, OSError) and exc.filename is not None:
            return error_exit(f"{exc.filename}: {exc.strerror or exc}")
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
