"""Reading a data file (Parquet, CSV or JSON lines) into a DataFrame, for the reference
build and the labels; a file that cannot be read raises ProfileError naming the file and
the fix."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from detectors.profile_file import ProfileError

if TYPE_CHECKING:
    import pandas as pd


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a Parquet, CSV or JSON-lines file into a DataFrame, by its extension."""
    import pandas as pd  # offline reading only: the agent's path stays without pandas

    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if not path.exists():
        raise ProfileError(f"{path}: no such file; check the path (relative to {Path.cwd()})")
    if path.is_dir():
        raise ProfileError(f"{path}: is a directory; name a .parquet, .csv or .jsonl file")
    if path.stat().st_size == 0:
        raise ProfileError(
            f"{path}: the file is empty; it needs a header (or JSON objects) and rows of data"
        )
    try:
        if ".parquet" in suffixes or ".pq" in suffixes:
            return pd.read_parquet(path)
        # Both text readers default to a fast float parser that can be off in the last
        # digit; the profile of a CSV must equal the profile of the frame it was written from.
        if ".csv" in suffixes:
            return pd.read_csv(path, float_precision="round_trip")
        if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
            return pd.read_json(path, lines=True, precise_float=True)
    except pd.errors.EmptyDataError as exc:
        raise ProfileError(
            f"{path}: no columns in the file (blank lines only?); it needs a header line "
            "and rows of data"
        ) from exc
    except (ValueError, OSError) as exc:
        raise ProfileError(f"{path}: cannot read data: {exc}") from exc
    suffix = "".join(path.suffixes) or "no extension"
    raise ProfileError(
        f"{path}: unknown data format ({suffix}); use a .parquet, .csv or .jsonl file "
        "(rename it if it holds one of those)"
    )
