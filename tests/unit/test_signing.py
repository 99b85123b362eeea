"""The webhook signature verifier on hostile headers: its own error, never another one."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.actions.signing import SignatureError, signature_header, verify

SECRET = "hook-secret"
BODY = b'{"decision": "rollback"}'


@pytest.mark.parametrize(
    "timestamp",
    [
        "1000²",  # superscript two: str.isdigit() is True, int() refuses it
        "١٠٠٠",  # Arabic-Indic digits: int() would read them as 1000
        "１０００",  # fullwidth digits
        "9" * 5000,  # beyond int()'s digit limit
        "9" * 400,  # an integer no float can hold
    ],
    ids=["superscript", "arabic-indic", "fullwidth", "5000-digits", "400-digits"],
)
def test_a_timestamp_that_is_not_ascii_unix_seconds_is_a_signature_error(timestamp: str) -> None:
    good = signature_header(SECRET, BODY, 1_000).split(",", 1)[1]
    with pytest.raises(SignatureError, match="not one integer"):
        verify(SECRET, f"t={timestamp},{good}", BODY, now=lambda: 1_000.0)


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=80), extra=st.text(max_size=20))
def test_any_header_is_verified_or_refused_with_a_signature_error(header: str, extra: str) -> None:
    for candidate in (header, f"t={extra},v1={header}", f"t=1000,v1={extra}"):
        with contextlib.suppress(SignatureError):
            verify(SECRET, candidate, BODY, now=lambda: 1_000.0)


def test_a_secret_with_a_trailing_newline_signs_as_the_trimmed_secret() -> None:
    # one side reads the Secret from an environment variable (newline kept), the other
    # from a file or a shell variable (newline trimmed): both must agree
    header = signature_header(f"{SECRET}\n", BODY, 1_000)
    assert verify(SECRET, header, BODY, now=lambda: 1_000.0)
    header = signature_header(SECRET, BODY, 1_000)
    assert verify(f"  {SECRET}\r\n", header, BODY, now=lambda: 1_000.0)
    with pytest.raises(ValueError, match="empty"):
        signature_header("\n", BODY, 1_000)


def test_the_action_reads_its_secret_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.config.rollback import ActionConfig

    monkeypatch.setenv("DRIFTLINE_TEST_SIGNING", f"{SECRET}\n")
    config = ActionConfig.model_validate(
        {"kind": "webhook", "url": "https://h.example/x", "secret_env": "DRIFTLINE_TEST_SIGNING"}
    )
    assert config.secret() == SECRET.encode()
    monkeypatch.setenv("DRIFTLINE_TEST_SIGNING", " \n")
    assert config.secret() is None  # only whitespace: not set, nothing is sent
