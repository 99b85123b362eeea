"""A reference profile is untrusted input (a ConfigMap, a URL): a compressed bomb must be
refused with a clear error before it exhausts memory."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.profile import MAX_PROFILE_BYTES, ProfileError, build_profile, load_profile

MiB = 1 << 20


def bomb(path: Path, members: int, member_bytes: int = 8 * MiB) -> Path:
    """A gzip file of ``members`` members of zeros: tiny on disk, huge when decompressed."""
    one = gzip.compress(b"\0" * member_bytes, compresslevel=9, mtime=0)
    path.write_bytes(one * members)
    return path


def test_a_gzip_bomb_is_refused_within_the_limit(tmp_path: Path) -> None:
    path = bomb(tmp_path / "ref.json.gz", members=16)  # 128 MiB of zeros in ~130 kB
    assert path.stat().st_size < MiB
    tracemalloc.start()
    try:
        with pytest.raises(ProfileError, match=r"more than 4 MiB.*compressed bomb"):
            load_profile(path, max_bytes=4 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # it stopped at the limit: never near the 128 MiB the file would expand to
    assert peak < 3 * 4 * MiB, peak


def test_the_default_limit_is_far_above_real_profiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=5000) for i in range(50)})
    path = build_profile(frame).save(tmp_path / "ref.json.gz")
    raw = len(gzip.decompress(path.read_bytes()))
    assert raw * 20 < MAX_PROFILE_BYTES  # 50 columns with a 5,000-row sample
    assert load_profile(path).rows == 5000


def test_a_large_uncompressed_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    path.write_bytes(b" " * (2 * MiB))
    with pytest.raises(ProfileError, match="more than 1 MiB"):
        load_profile(path, max_bytes=MiB)


def test_several_gzip_members_within_the_limit_still_load(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(100, dtype=float)})
    path = build_profile(frame).save(tmp_path / "ref.json")
    data = path.read_bytes()
    half = len(data) // 2
    two = tmp_path / "two.json.gz"
    two.write_bytes(gzip.compress(data[:half], mtime=0) + gzip.compress(data[half:], mtime=0))
    assert load_profile(two).rows == 100
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(gzip.compress(data, mtime=0)[:-20])
    with pytest.raises(ProfileError, match="truncated or corrupt gzip"):
        load_profile(cut)
