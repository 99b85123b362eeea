"""Signatures of the requests driftline's webhook actions send, and their verification.

A receiver must be able to tell a rollback request from driftline from a forged or
replayed one. Each request carries::

    X-Driftline-Signature: t=1718000000,v1=5257a869e7ec...8d8bd   (64 hex digits)

``t`` is the Unix time of signing and ``v1`` the hex HMAC-SHA256, keyed with the shared
secret, of the bytes ``"<t>." + body`` (the body exactly as sent). Binding the timestamp
into the MAC lets a receiver reject old requests (replays) by checking ``t`` against its
own clock; the scheme is the one Stripe uses, so existing verifiers port easily. A header
may carry several ``v1`` values (signed with an old and a new secret while rotating);
any one matching is enough.

Receivers in Python::

    from monitor.actions.signing import SignatureError, verify

    try:
        verify(secret, request.headers["X-Driftline-Signature"], raw_body, tolerance=300)
    except SignatureError as exc:
        return 400, str(exc)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "SignatureError",
    "sign",
    "signature_header",
    "verify",
]

SIGNATURE_HEADER = "X-Driftline-Signature"
IDEMPOTENCY_HEADER = "X-Driftline-Idempotency-Key"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300


class SignatureError(ValueError):
    """A signature header that does not prove the body came from the secret's holder
    recently; the message says which check failed (never the secret or the MAC)."""


def _key(secret: str | bytes) -> bytes:
    # Surrounding whitespace is not part of the key: a Secret written with echo or from a
    # file ends in a newline that one side may trim and the other not.
    key = (secret.encode() if isinstance(secret, str) else bytes(secret)).strip()
    if not key:
        raise ValueError("the signing secret is empty")
    return key


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Driftline-Signature`` value for ``body``, signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},{SCHEME}={sign(secret, t, body)}"


# Unix seconds have 10 digits until the year 2286.
_MAX_TIMESTAMP_DIGITS = 12


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            # ASCII digits only: str.isdigit() also accepts "²" or "١", which int() refuses
            # or reads; and few enough of them to stay a float (a time, not a big integer)
            if not (value.isascii() and value.isdigit()) or len(value) > _MAX_TIMESTAMP_DIGITS:
                raise SignatureError("the signature header's timestamp t is not one integer")
            if timestamp is not None:
                raise SignatureError("the signature header's timestamp t is not one integer")
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value.strip().lower())
    if timestamp is None:
        raise SignatureError("the signature header has no timestamp t=<unix seconds>")
    if not signatures:
        raise SignatureError(f"the signature header has no {SCHEME}= signature")
    return timestamp, signatures


def verify(
    secret: str | bytes | Iterable[str | bytes],
    header: str | None,
    body: bytes,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: Callable[[], float] = time.time,
) -> bool:
    """Check an ``X-Driftline-Signature`` header against the raw request ``body``.

    ``secret`` may be a list (the current and the previous secret while rotating).
    Raises :class:`SignatureError` when the header is missing or malformed, when its
    timestamp is more than ``tolerance`` seconds from now (either way: a replay, or a
    clock far off), or when no signature matches; returns True otherwise. Signatures are
    compared in constant time.
    """
    if not header:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
    timestamp, offered = _parse(header)
    age = now() - timestamp
    if abs(age) > tolerance:
        raise SignatureError(
            f"the signature's timestamp is {age:.0f}s from now, beyond the tolerance of "
            f"{tolerance:g}s"
        )
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets:
        raise ValueError("no secret to verify with")
    matched = False
    for key in secrets:
        expected = sign(key, timestamp, body).encode()
        for candidate in offered:
            # no early exit: every comparison runs, so timing says nothing about which
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("no signature matches the body")
    return True
