"""Durable checkpoints of the agent's progress: source offsets plus window state.

The at-least-once protocol, which the agent follows:

1. Apply a batch to the windows (``WindowManager.add``).
2. Periodically (``state.checkpoint_interval``) save a ``Checkpoint`` holding the window
   state (``WindowManager.snapshot()``) and, per (topic, partition), the next offset to
   consume — the offset after the last message whose rows are in that state.
3. Only after ``CheckpointStore.save`` has returned (the file is fsynced and renamed into
   place, and the directory fsynced) commit those same offsets to Kafka.

On restart, load the checkpoint, restore the windows from it and seek every partition to
the checkpoint's offsets — not to the committed ones, which can be older (the agent may
have stopped between steps 2 and 3) or, after a fallback to ``.prev``, newer. Records
between the checkpoint and wherever the consumer had got to are delivered again; the seek
means none of them is missing from the restored windows, and the request-id dedupe
(whose memory is part of the window state) means none is counted twice. A partition the
checkpoint does not know starts from its committed offset.

When there is no usable checkpoint — none yet, both files corrupt (``CheckpointError``),
or one built on another reference profile (``ReferenceMismatchError``) — the agent logs
a warning, starts its windows fresh and consumes from the committed offsets.

File format: a fixed header (magic, format version, body length, sha256 of the body)
followed by the body (a JSON document with the offsets and metadata, then the window
state bytes). A truncated or altered file fails the length or checksum test and is
reported by name. Each save keeps the previous good checkpoint as ``checkpoint.prev``,
which ``load`` falls back to if the newest one is damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MAGIC = b"DLCKPT\x00\x01"
_HEADER = struct.Struct("<8sHQ32s")  # magic, format version, body length, sha256(body)
_META_LEN = struct.Struct("<I")
CURRENT_NAME = "checkpoint"
PREVIOUS_NAME = "checkpoint.prev"
TEMP_NAME = "checkpoint.tmp"


class CheckpointError(Exception):
    """A checkpoint file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"checkpoint {path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class ReferenceMismatchError(CheckpointError):
    """A sound checkpoint whose windows were built on a different reference profile."""


@dataclass
class Checkpoint:
    """What the agent needs to resume: where to read from and the windows so far."""

    offsets: dict[tuple[str, int], int]  # (topic, partition) -> next offset to consume
    windows: bytes  # WindowManager.snapshot()
    reference_hash: str
    created_at: float
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable


def encode(checkpoint: Checkpoint) -> bytes:
    """The file contents for ``checkpoint``."""
    meta = {
        "offsets": [
            [topic, int(partition), int(offset)]
            for (topic, partition), offset in sorted(checkpoint.offsets.items())
        ],
        "reference_hash": checkpoint.reference_hash,
        "created_at": checkpoint.created_at,
        "extra": checkpoint.extra,
    }
    head = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode()
    body = _META_LEN.pack(len(head)) + head + bytes(checkpoint.windows)
    digest = hashlib.sha256(body).digest()
    return _HEADER.pack(_MAGIC, FORMAT_VERSION, len(body), digest) + body


def decode(data: bytes, path: Path | str = "<bytes>") -> Checkpoint:
    """Parse and verify file contents; ``CheckpointError`` says what is wrong."""
    if len(data) < _HEADER.size:
        raise CheckpointError(
            path, f"truncated: {len(data)} bytes, shorter than the {_HEADER.size}-byte header"
        )
    magic, version, length, digest = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise CheckpointError(path, "not a driftline checkpoint (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            path, f"format version {version}; this agent reads version {FORMAT_VERSION}"
        )
    body = data[_HEADER.size :]
    if len(body) != length:
        what = "truncated" if len(body) < length else "has trailing bytes"
        raise CheckpointError(path, f"{what}: header says {length} body bytes, found {len(body)}")
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(path, "checksum mismatch: the file is corrupt")
    try:
        (meta_len,) = _META_LEN.unpack_from(body)
        meta = json.loads(body[_META_LEN.size : _META_LEN.size + meta_len])
        offsets = {(str(t), int(p)): int(o) for t, p, o in meta["offsets"]}
        return Checkpoint(
            offsets=offsets,
            windows=body[_META_LEN.size + meta_len :],
            reference_hash=str(meta["reference_hash"]),
            created_at=float(meta["created_at"]),
            extra=dict(meta["extra"]),
        )
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(path, f"unreadable contents: {exc}") from exc


class CheckpointStore:
    """The state directory: the newest checkpoint and the one before it."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / CURRENT_NAME
        self.prev_path = self.directory / PREVIOUS_NAME
        self._tmp_path = self.directory / TEMP_NAME
        # whether self.path is known to hold a sound checkpoint (None: not looked at yet)
        self._current_ok: bool | None = None
        self.last_warning: str | None = None  # why the last load fell back to .prev

    def save(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` durably; on return it survives a crash or power loss.

        Written to a temporary file, fsynced, then renamed over the newest checkpoint,
        whose previous contents become ``.prev`` (unless they were damaged, in which case
        the older ``.prev`` is kept); the directory is fsynced so the renames persist.
        """
        data = encode(checkpoint)
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self._tmp_path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if self.path.exists() and self._current_is_sound():
            os.replace(self.path, self.prev_path)
        os.replace(self._tmp_path, self.path)
        _fsync_directory(self.directory)
        self._current_ok = True

    def _current_is_sound(self) -> bool:
        if self._current_ok is None:
            try:
                decode(self.path.read_bytes(), self.path)
                self._current_ok = True
            except (CheckpointError, OSError):
                self._current_ok = False
        return self._current_ok

    def load(self, reference_hash: str | None = None) -> Checkpoint | None:
        """The newest sound checkpoint, or None when there is none at all.

        Falls back to ``.prev`` when the newest file is damaged (logging a warning and
        keeping it in ``last_warning``); raises ``CheckpointError`` when no file is
        usable, and ``ReferenceMismatchError`` when ``reference_hash`` is given and the
        checkpoint was built on another reference.
        """
        self.last_warning = None
        problems: list[CheckpointError] = []
        for path in (self.path, self.prev_path):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                problems.append(CheckpointError(path, f"cannot be read: {exc}"))
                continue
            try:
                checkpoint = decode(data, path)
            except CheckpointError as exc:
                problems.append(exc)
                continue
            if path == self.path:
                self._current_ok = True
            else:
                why = str(problems[0]) if problems else f"checkpoint {self.path}: missing"
                self.last_warning = f"{why}; using the previous checkpoint {path}"
                log.warning(self.last_warning)
            if reference_hash is not None and checkpoint.reference_hash != reference_hash:
                raise ReferenceMismatchError(
                    path,
                    f"built on reference {checkpoint.reference_hash[:12]}, but the agent "
                    f"runs reference {reference_hash[:12]}; its windows cannot be resumed",
                )
            return checkpoint
        if self.path.exists():
            self._current_ok = False
        if not problems:
            return None
        if len(problems) == 1:
            raise problems[0]
        raise CheckpointError(
            problems[0].path,
            f"{problems[0].problem}; the previous checkpoint {problems[1].path} is unusable "
            f"too ({problems[1].problem})",
        )


def _fsync_directory(directory: Path) -> None:
    """Persist renames in ``directory`` (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
