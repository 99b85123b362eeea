"""Credentials out of everything driftline prints: config output, logs, the audit log.

Secrets belong in environment variables (the ``*_env`` keys), but a URL can still carry
one: ``https://user:password@host/hook`` or ``?token=...``. Every place that shows a URL
or a message that may contain one goes through this module, so the rule is written once:

* the user info of a URL (``user:password@``, or a bare token before ``@``) becomes ``***``;
* the value of a query parameter whose name says it is a credential (it contains
  ``token``, ``key``, ``secret``, ``pass``, ``pwd``, ``sig``, ``auth`` or ``credential``)
  becomes ``***``.

The host, port and path stay, so a redacted URL still says where a request went.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "RedactingFormatter", "redact", "redact_text", "redact_url"]

MASK = "***"

_SECRET_PARAM = re.compile(r"token|key|secret|pass|pwd|sig|auth|credential", re.IGNORECASE)
# A URL in free text: a scheme, "://", then anything up to white space or a closing quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# Only what could hold a credential is rewritten; other text is left byte for byte.
_MAY_HOLD_SECRET = re.compile(r"[@?&#]")


def redact_url(url: str) -> str:
    """``url`` with its user info and credential query values replaced by ``***``."""
    if not _MAY_HOLD_SECRET.search(url):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host: mask everything after "//"
        scheme, sep, _ = url.partition("://")
        return f"{scheme}{sep}{MASK}" if sep else MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        query = "&".join(_redact_param(p) for p in query.split("&"))
    fragment = parts.fragment
    if fragment and "=" in fragment:  # OAuth implicit flow: #access_token=...
        fragment = "&".join(_redact_param(p) for p in fragment.split("&"))
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def _redact_param(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if sep and value and _SECRET_PARAM.search(name):
        return f"{name}={MASK}"
    return pair


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (see :func:`redact_url`)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value (mappings, lists, strings) with every URL redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class RedactingFormatter(logging.Formatter):
    """A log formatter whose lines never carry a URL's credentials (whoever logged it:
    driftline, aiokafka, urllib3), tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))
