"""The reference profile's file: a versioned JSON envelope (gzip when the name ends in
``.gz``) carrying the profile body and its content hash, the size limit a file must keep
to once decompressed, and the JSON forms of the arrays a profile holds.

It knows nothing of the profile's content (``detectors/profile.py`` turns the body into
a ``Profile`` and checks the hash), so every module of the profile can use it.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from detectors.schema import Kind

PROFILE_FORMAT = "driftline-profile"
PROFILE_VERSION = 1

# The most bytes a profile file may hold once decompressed. A profile of 1,000 columns with
# a 5,000-row sample is about 100 MB of JSON; a gzip "bomb" of 1 MB can expand to
# gigabytes, so decompression stops here instead of exhausting the agent's memory.
MAX_PROFILE_BYTES = 256 << 20


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the problem."""


def write_profile_file(path: str | Path, body: dict[str, Any], sha256: str) -> Path:
    """Write the versioned profile file; gzip when the name ends in ``.gz``."""
    path = Path(path)
    envelope = {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "sha256": sha256,
        "profile": body,
    }
    data = orjson.dumps(envelope, option=orjson.OPT_SERIALIZE_NUMPY)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def read_profile_file(path: Path, max_bytes: int = MAX_PROFILE_BYTES) -> dict[str, Any]:
    """The envelope of a profile file, its format and version checked; any problem raises
    ProfileError naming the file. Neither the file nor its decompressed content may exceed
    ``max_bytes``: decompression stops there, whatever the file claims."""
    try:
        if path.stat().st_size > max_bytes:
            raise ProfileError(f"{path}: {_too_big(max_bytes)}")
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read reference profile: {exc.strerror}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = _gunzip(raw, max_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise ProfileError(f"{path}: truncated or corrupt gzip data: {exc}") from exc
        except ValueError as exc:
            raise ProfileError(f"{path}: {exc}") from None
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProfileError(
            f"{path}: not a driftline profile (truncated or corrupt JSON: {exc}); "
            "rebuild it with `driftline reference build`"
        ) from exc
    if not isinstance(envelope, dict) or envelope.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"{path}: not a driftline profile (no '{PROFILE_FORMAT}' header)")
    version = envelope.get("version")
    if version != PROFILE_VERSION:
        raise ProfileError(
            f"{path}: profile format version {version!r} is not supported by this driftline "
            f"(it reads version {PROFILE_VERSION}); rebuild it with `driftline reference build`"
        )
    return envelope


def _too_big(limit: int) -> str:
    return (
        f"decompresses to more than {limit >> 20} MiB, the most a reference profile may "
        "hold; this is not a profile written by `driftline reference build` (a compressed "
        "bomb?)"
    )


def _gunzip(data: bytes, limit: int) -> bytes:
    """gzip members decompressed, at most ``limit`` bytes (ValueError beyond it)."""
    out = bytearray()
    while data:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += member.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            raise ValueError(_too_big(limit))
        if not member.eof:
            raise EOFError("the gzip stream ends before its last member does")
        data = member.unused_data
    return bytes(out)


def canonical_json(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def array_to_json(arr: np.ndarray) -> list[Any]:
    if arr.dtype.kind == "f":
        return [None if math.isnan(v) else v for v in arr.tolist()]
    return [None if v is None else str(v) for v in arr.tolist()]


def bin_means_from_json(values: list[Any] | None, bins: int) -> np.ndarray:
    """Bin means from a file (null for an empty bin); all NaN when the file predates them."""
    if values is None:
        return np.full(bins, np.nan)
    means = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if means.shape != (bins,):
        raise ValueError(f"{len(means)} bin means for {bins} bins")
    return means


def array_from_json(values: list[Any], kind: Kind) -> np.ndarray:
    if kind is Kind.NUMERIC:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=object)
