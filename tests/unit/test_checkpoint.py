"""Durable checkpoints: round trip, atomic replacement with a fallback, and clear errors
for truncated, corrupt or foreign checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from monitor.runtime.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    ReferenceMismatchError,
    decode,
    encode,
)

REF = "a" * 64


def checkpoint(offset: int, *, reference: str = REF) -> Checkpoint:
    return Checkpoint(
        offsets={("predictions", 0): offset, ("predictions", 1): offset + 7, ("other", 3): 2},
        windows=bytes(range(256)) * 4 + str(offset).encode(),
        reference_hash=reference,
        created_at=1_700_000_000.25 + offset,
        extra={"model": "fraud", "windows_closed": offset},
    )


def test_round_trip(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "state")
    assert store.load() is None
    cp = checkpoint(10)
    store.save(cp)
    loaded = CheckpointStore(tmp_path / "state").load(reference_hash=REF)
    assert loaded == cp
    assert not (tmp_path / "state" / "checkpoint.tmp").exists()


def test_each_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(checkpoint(1))
    store.save(checkpoint(2))
    store.save(checkpoint(3))
    assert decode(store.path.read_bytes()) == checkpoint(3)
    assert decode(store.prev_path.read_bytes()) == checkpoint(2)


def test_a_truncated_checkpoint_is_detected_and_the_previous_one_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path)
    store.save(checkpoint(1))
    store.save(checkpoint(2))
    data = store.path.read_bytes()
    store.path.write_bytes(data[: len(data) // 2])
    fresh = CheckpointStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="monitor.runtime.checkpoint"):
        loaded = fresh.load(reference_hash=REF)
    assert loaded == checkpoint(1)
    assert fresh.last_warning is not None
    assert "truncated" in fresh.last_warning and str(store.path) in fresh.last_warning
    assert any("truncated" in r.getMessage() for r in caplog.records)
    # the damaged file is not rotated over the good previous one
    fresh.save(checkpoint(3))
    assert decode(fresh.prev_path.read_bytes()) == checkpoint(1)
    assert fresh.load() == checkpoint(3)


def test_a_corrupt_checksum_is_reported_with_the_file_name(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(checkpoint(1))
    data = bytearray(store.path.read_bytes())
    data[-3] ^= 0xFF
    store.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum") as info:
        store.load()
    assert info.value.path == store.path
    assert str(store.path) in str(info.value)


def test_both_files_damaged_names_both(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(checkpoint(1))
    store.save(checkpoint(2))
    store.path.write_bytes(b"")
    store.prev_path.write_bytes(b"garbage that is long enough to hold a header, surely")
    with pytest.raises(CheckpointError) as info:
        store.load()
    message = str(info.value)
    assert str(store.path) in message and str(store.prev_path) in message
    assert "truncated" in message and "magic" in message


def test_a_missing_newest_file_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    """A crash between the two renames of a save leaves only .prev."""
    store = CheckpointStore(tmp_path)
    store.save(checkpoint(1))
    store.save(checkpoint(2))
    store.path.unlink()
    assert CheckpointStore(tmp_path).load() == checkpoint(1)


def test_a_half_written_temporary_file_changes_nothing(tmp_path: Path) -> None:
    """A crash while writing leaves a partial temporary file beside the good checkpoint."""
    store = CheckpointStore(tmp_path)
    store.save(checkpoint(1))
    (tmp_path / "checkpoint.tmp").write_bytes(encode(checkpoint(2))[:100])
    assert CheckpointStore(tmp_path).load() == checkpoint(1)
    store.save(checkpoint(3))
    assert not (tmp_path / "checkpoint.tmp").exists()
    assert store.load() == checkpoint(3)
    assert decode(store.prev_path.read_bytes()) == checkpoint(1)


def test_a_checkpoint_on_another_reference_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(checkpoint(1, reference="b" * 64))
    with pytest.raises(ReferenceMismatchError, match="bbbbbbbbbbbb") as info:
        store.load(reference_hash=REF)
    assert "aaaaaaaaaaaa" in str(info.value) and str(store.path) in str(info.value)
    assert store.load() is not None  # without a hash to check, it loads


def test_decode_rejects_other_formats() -> None:
    data = encode(checkpoint(1))
    with pytest.raises(CheckpointError, match="magic"):
        decode(b"X" + data[1:])
    bumped = bytearray(data)
    bumped[8] = 9  # format version
    with pytest.raises(CheckpointError, match="format version 9"):
        decode(bytes(bumped))
    with pytest.raises(CheckpointError, match="trailing"):
        decode(data + b"\x00")
    with pytest.raises(CheckpointError, match="truncated"):
        decode(data[:10])
