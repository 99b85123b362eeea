"""``driftline reference build --dask SCHEDULER``: the profile built on a Dask cluster
(``local`` starts a LocalCluster on this machine; otherwise a scheduler address)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detectors.profile import Profile, ProfileError
from detectors.schema import Schema

#: What a Dask build cannot do: each needs the whole frame in one process.
FRAME_ONLY = ("--calibrate-window", "--labels", "--model")


class DaskBuildError(ValueError):
    """A --dask build that cannot run as asked; the message says why and what to do."""


def refused(args: argparse.Namespace) -> list[str]:
    """The options given that a --dask build does not support."""
    given = {
        "--calibrate-window": bool(args.calibrate_window),
        "--labels": bool(args.labels),
        "--model": bool(getattr(args, "model", None)),
    }
    return [flag for flag in FRAME_ONLY if given[flag]]


def read(path: str) -> object:
    """A Dask DataFrame over Parquet, CSV or JSON-lines files (a glob or a directory)."""
    import dask.dataframe as dd

    lower = path.lower()
    if lower.endswith((".csv", ".csv.gz")):
        return dd.read_csv(path)
    if lower.endswith((".jsonl", ".json")):
        return dd.read_json(path, lines=True)
    return dd.read_parquet(path)


def build(args: argparse.Namespace, schema: Schema | None) -> Profile:
    """The profile of ``args.data`` computed on the cluster ``args.dask`` names."""
    try:
        import distributed
    except ImportError:
        raise DaskBuildError("--dask needs Dask: pip install 'driftline[distributed]'") from None
    from monitor.offline.distributed_profile import reference_profile_dask

    bad = refused(args)
    if bad:
        raise DaskBuildError(
            f"--dask does not support {', '.join(bad)} (they need the whole data in one "
            "process); build without them, or without --dask"
        )
    if not Path(args.data).exists() and not any(c in args.data for c in "*?["):
        raise DaskBuildError(f"--data {args.data}: no such file or directory")
    prediction = args.prediction.split(",") if args.prediction else None
    if args.dask == "local":
        cluster = distributed.LocalCluster(dashboard_address=None)
        client = distributed.Client(cluster)
    else:
        cluster, client = None, distributed.Client(args.dask)
    try:
        return reference_profile_dask(
            read(args.data),  # type: ignore[arg-type]
            schema,
            pane_rows=args.sequential_pane_rows,
            panes=args.sequential_panes,
            prediction=prediction,
            bins=args.bins,
            top_k=args.top_k,
            sample_rows=args.sample_rows,
        )
    except (ValueError, OSError) as exc:
        raise ProfileError(f"{args.data}: {exc}") from None
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_cli(
    args: argparse.Namespace,
    load_schema: Callable[[Path], Schema],
    error: Callable[[object], int],
    err: Any,
) -> int:
    """``reference build --dask``: build, save and say what was written (exit 0), or why
    not (exit 2)."""
    schema = load_schema(Path(args.schema)) if args.schema else None
    try:
        profile = build(args, schema)
    except DaskBuildError as exc:
        return error(exc)
    out = profile.save(args.output)
    err.print(
        f"wrote {out} ({len(profile.schema.columns)} columns, {profile.rows:,} rows, "
        f"reference {profile.short_hash}; built on Dask)"
    )
    return 0
