"""The admin console's sealed session cookie: it opens only as sealed, by the same secret, before it ends."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from auth_service.domain.admin_keys import USERS_READ, new_key, parse_presented
from auth_service.domain.console_sessions import (
    MAX_SEALED_LENGTH,
    SESSION_HOURS,
    SIGN_IN_FORM_MINUTES,
    SessionSealer,
    signed_in,
    signed_out,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SECRET = "unit-test-jwt-secret-0123456789abcdef"


def secret_of(key: str) -> str:
    # A key's secret is URL-safe base64 and may itself hold "_", so split by the key's own pattern.
    parsed = parse_presented(key)
    assert parsed is not None
    return parsed[1]


def test_a_session_opens_to_what_was_sealed_and_never_shows_the_key():
    key = new_key("support-ada", [USERS_READ], NOW).key
    sealer = SessionSealer(SECRET)
    session = signed_in(key, NOW)
    sealed = sealer.seal(session)
    assert key not in sealed and secret_of(key) not in sealed and session.csrf not in sealed
    assert len(sealed) <= MAX_SEALED_LENGTH
    assert sealer.open(sealed, NOW) == session
    # Sealed twice, never the same value: nothing to compare between two cookies.
    assert sealer.seal(session) != sealed


def test_an_altered_foreign_or_garbled_cookie_does_not_open():
    sealer = SessionSealer(SECRET)
    sealed = sealer.seal(signed_in(new_key("ada", [USERS_READ], NOW).key, NOW))
    version, _, payload = sealed.partition(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[20] ^= 1
    altered = f"{version}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"
    for value in (
        altered,
        SessionSealer(SECRET + "-other").seal(signed_out(NOW)),
        "v2" + sealed[2:],
        sealed[:-3],
        "v1.!!!",
        "v1.",
        "",
        None,
        "v1." + "A" * (MAX_SEALED_LENGTH + 1),
    ):
        assert sealer.open(value, NOW) is None, value


def test_a_session_ends_on_time_whatever_the_browser_keeps():
    sealer = SessionSealer(SECRET)
    inside = sealer.seal(signed_in(new_key("ada", [USERS_READ], NOW).key, NOW))
    assert sealer.open(inside, NOW + timedelta(hours=SESSION_HOURS) - timedelta(seconds=1)) is not None
    assert sealer.open(inside, NOW + timedelta(hours=SESSION_HOURS)) is None
    form = sealer.seal(signed_out(NOW))
    opened = sealer.open(form, NOW)
    assert opened is not None and opened.key is None
    assert sealer.open(form, NOW + timedelta(minutes=SIGN_IN_FORM_MINUTES)) is None


def test_the_csrf_token_is_per_session_and_compared_whole():
    first, second = signed_out(NOW), signed_in("ak_x", NOW)
    assert first.csrf != second.csrf and len(first.csrf) >= 43
    assert first.csrf_matches(first.csrf)
    for presented in (None, "", second.csrf, first.csrf[:-1], first.csrf + "x"):
        assert not first.csrf_matches(presented)
