"""driftline run, config check, demo, report and inject: the agent and what surrounds it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.commands.common import err, error_exit, progress_bar


def cmd_run(args: argparse.Namespace) -> int:
    from detectors.profile import ProfileError
    from monitor.config.errors import ConfigError
    from monitor.config.loader import load_config
    from monitor.runtime.aggregator import run
    from monitor.runtime.allocator import tune_allocator

    tune_allocator()  # before any thread: freed batches go back to the system
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return error_exit(exc)
    try:
        return run(cfg, role=args.role)
    except (ProfileError, ConfigError) as exc:
        return error_exit(exc)


def cmd_config_check(args: argparse.Namespace) -> int:
    from detectors.profile import ProfileError, load_profile
    from monitor.config.errors import ConfigError
    from monitor.config.loader import load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return error_exit(exc)
    if not args.no_reference:
        try:
            cfg.check_against_profile(load_profile(cfg.reference))
        except (ProfileError, ConfigError) as exc:
            return error_exit(exc)
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
        return error_exit(f"{exc.filename}: {exc.strerror}")
    except (ProfileError, ReportSelectionError, ValueError) as exc:
        return error_exit(exc)
    report = selection.report
    with progress_bar() as progress:
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
            return error_exit(exc)
    out = Path(args.output)
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        return error_exit(f"{out}: cannot write the report: {exc.strerror}")
    verdict = "drift" if report.drifted else "quality breach" if report.quality.breached else "ok"
    err.print(
        f"wrote {out} ({len(page) / 1e6:.1f} MB): {report.model} {report.model_version}, "
        f"window starting {report.window_start}, {verdict}"
    )
    return 0


def cmd_inject(args: argparse.Namespace) -> int:
    from monitor.inject import run_command

    return run_command(args)
