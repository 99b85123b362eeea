"""The driftline sidecar injector: a Kubernetes mutating admission webhook.

``driftline inject serve`` answers the API server's AdmissionReviews over TLS and adds
the driftline agent to pods annotated ``driftline.io/inject: "true"``
(:mod:`monitor.inject.webhook` decides and builds the JSONPatch,
:mod:`monitor.inject.server` serves it, :mod:`monitor.inject.settings` reads the
cluster-wide ``injector.yaml``). ``driftline inject prepare`` is the injected pod's init
step (:mod:`monitor.inject.prepare`). See docs/kubernetes.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from monitor.inject.settings import InjectorSettings, SettingsError, load_settings
from monitor.inject.webhook import Outcome, decide, handle_review

__all__ = [
    "InjectorSettings",
    "Outcome",
    "decide",
    "handle_review",
    "load_settings",
    "run_command",
]

log = logging.getLogger(__name__)


def run_command(args: argparse.Namespace) -> int:
    """``driftline inject serve|prepare``, from the parsed command line."""
    if args.inject_command == "serve":
        from monitor.inject.server import serve

        try:
            settings = load_settings(args.settings)
        except SettingsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.failure_policy is not None:
            settings = settings.model_copy(update={"failure_policy": args.failure_policy})
        try:
            return serve(settings, args.tls_cert, args.tls_key, args.host, args.port)
        except (OSError, ValueError) as exc:
            print(f"error: cannot start the injector: {exc}", file=sys.stderr)
            return 2
    if args.inject_command == "prepare":
        from monitor.inject.prepare import PrepareError, prepare

        try:
            written = prepare(
                Path(args.output_dir),
                reference_url=args.reference_url,
                reference_file=Path(args.reference_file) if args.reference_file else None,
                reference_sha256=args.reference_sha256,
            )
        except (PrepareError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for path in written:
            log.info("wrote %s", path)
        return 0
    raise SystemExit(f"error: unknown inject command {args.inject_command!r}")
