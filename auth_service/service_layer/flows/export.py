"""The export: everything the service keeps about an account, as one JSON document a person can read.

Each stored field is named here, once: either the name it has in the export
and the group it goes in, or ``Secret`` with the reason it stays out (a hash,
a digest, an id a code is derived from). A field stored but named nowhere is
left out and logged, and tests/unit/test_leaving.py fails on it: a new field
cannot slip into the store without a decision about the export.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from auth_service.domain.errors import InvalidCredentials
from auth_service.domain.passwords import PasswordHasher
from auth_service.service_layer.activity import ActivityLog
from auth_service.service_layer.capabilities import Authenticator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Field:
    """A stored field in the export: its group (None: at the top of the item) and its readable name."""

    name: str
    group: str | None = None


@dataclass(frozen=True)
class Secret:
    """A stored field that never leaves: why."""

    reason: str


@dataclass(frozen=True)
class Nested:
    """A stored sub-document, or a list of them, exported under ``name`` (in ``group``) by its own spec."""

    name: str
    spec: Mapping[str, Rule]
    group: str | None = None


Rule = Field | Secret | Nested

PROFILE, STATUS, LOCALE, SECOND_FACTOR, SIGN_IN, CHANGES, LINKS, DELETION, WAITING = (
    "profile",
    "status_and_dates",
    "language",
    "second_factor",
    "sign_in_protection",
    "changes_waiting_for_a_code",
    "this_wasnt_me_links",
    "deletion",
    "messages_waiting_to_be_sent",
)

ACCOUNT: Mapping[str, Rule] = {
    "_id": Field("account_id", PROFILE),
    "email": Field("email_address", PROFILE),
    "name": Field("name", PROFILE),
    "password_hash": Secret("the password's bcrypt hash"),
    "status": Field("status", STATUS),
    "created_at": Field("registered_at", STATUS),
    "verified_at": Field("address_confirmed_at", STATUS),
    "expires_at": Field("deleted_if_not_confirmed_by", STATUS),
    "password_changed_at": Field("password_changed_at", STATUS),
    "email_changed_at": Field("email_address_changed_at", STATUS),
    "tokens_revoked_at": Field("every_sign_in_ended_at", STATUS),
    "restored_at": Field("deletion_undone_at", STATUS),
    "erasing_at": Field("erasure_began_at", STATUS),
    "registered_seq": Field("registration_number", STATUS),
    "code_seq": Field("last_code_request_number", STATUS),
    "token_version": Field("sign_in_generation", STATUS),
    "confirmed_code_tag": Secret("a keyed hash of the code that confirmed the address"),
    "locale": Field("language_of_emails", LOCALE),
    "mfa_enabled": Field("code_by_email_at_sign_in", SECOND_FACTOR),
    "trusted_devices": Nested(
        "devices_that_skip_the_code",
        {"device": Secret("a hash of the device's identity"), "until": Field("trusted_until")},
        SECOND_FACTOR,
    ),
    "failed_logins": Field("failed_logins_in_a_row", SIGN_IN),
    "locked_until": Field("locked_until", SIGN_IN),
    "lock_id": Field("lock_id", SIGN_IN),
    "known_devices": Nested(
        "known_devices",
        {"key": Secret("a hash of the device's identity"), "last_seen": Field("last_sign_in_at")},
        SIGN_IN,
    ),
    "pending_email": Field("new_email_address", CHANGES),
    "address_history": Nested(
        "addresses_left",
        {
            "email": Field("email_address"),
            "left_at": Field("left_at"),
            "undo_until": Field("old_address_may_undo_until"),
        },
        CHANGES,
    ),
    "must_reset": Field("password_reset_required", SIGN_IN),
    "frozen_at": Field("frozen_for_support_at", STATUS),
    "not_me_version": Field("links_generation", LINKS),
    "pending_changes": Nested(
        "changes",
        {
            "submission_id": Field("id"),
            "purpose": Field("kind"),
            "stored_at": Field("asked_at"),
            "new_email": Field("new_email_address"),
            "password_hash": Secret("the new password's bcrypt hash"),
        },
        CHANGES,
    ),
    "not_me": Nested(
        "links",
        {
            "digest": Secret("a digest of the link's token"),
            "email": Field("mailed_to"),
            "notice": Field("in_the_notice"),
            "expires_at": Field("valid_until"),
            "used_at": Field("used_at"),
            "used": Field("used"),
            "void": Field("voided"),
        },
        LINKS,
    ),
    "deletion": Nested(
        "confirmed_deletion",
        {
            "id": Field("id"),
            "email": Field("code_mailed_to"),
            "requested_at": Field("confirmed_at"),
            "delete_after": Field("erased_at"),
            "notice_id": Field("notice_message_id"),
        },
        DELETION,
    ),
    "restore_links": Nested(
        "restore_links",
        {"digest": Secret("a digest of the link's token"), "expires_at": Field("valid_until")},
        DELETION,
    ),
    "outbox": Nested(
        "messages",
        {
            "queue": Field("destination"),
            "message_id": Field("id"),
            "type": Field("kind"),
            "body": Field("content"),
            "request_id": Field("request_id"),
            "expiration_ms": Field("due_in_milliseconds"),
            "client": Nested("caused_by_request_from", {"ip": Field("ip"), "device": Field("device")}),
        },
        WAITING,
    ),
    "outbox_due_at": Field("sent_by_the_relay_after", WAITING),
}

SESSIONS: Mapping[str, Rule] = {
    "_id": Field("session_id"),
    "user_id": Field("account_id"),
    "token_version": Field("sign_in_generation"),
    "created_at": Field("started_at"),
    "expires_at": Field("ends_at"),
    "ended_at": Field("ended_at"),
    "ended_reason": Field("ended_because"),
    "device": Field("device"),
    "device_key": Secret("a hash of the device's identity"),
    "ip": Field("last_ip"),
    "last_used_at": Field("last_used_at"),
}

REFRESH_TOKENS: Mapping[str, Rule] = {
    "_id": Secret("the refresh token's SHA-256"),
    "parent_hash": Secret("the previous refresh token's SHA-256"),
    "family_id": Field("session_id"),
    "user_id": Field("account_id"),
    "token_version": Field("sign_in_generation"),
    "issued_at": Field("issued_at"),
    "expires_at": Field("expires_at"),
    "used_at": Field("used_at"),
}

ACTIVITY: Mapping[str, Rule] = {
    "_id": Field("id"),
    "user_id": Field("account_id"),
    "type": Field("what"),
    "occurred_at": Field("when"),
    "ip": Field("ip"),
    "device": Field("device"),
    "expires_at": Field("kept_until"),
}

CHALLENGES: Mapping[str, Rule] = {
    "_id": Secret("the challenge's SHA-256"),
    "device": Secret("a hash of the device's identity"),
    "user_id": Field("account_id"),
    "email": Field("code_mailed_to"),
    "sequence": Field("code_request_number"),
    "expires_at": Field("valid_until"),
}

ASKS: Mapping[str, Rule] = {
    "_id": Secret("the id the asked-for code is derived from"),
    "email": Field("email_address"),
    "purpose": Field("kind_of_code"),
    "requested_at": Field("asked_at"),
    "due_at": Field("handled_after"),
    "request_id": Field("request_id"),
}

# Each collection's spec, for the test that every stored field is decided on.
SPECS: Mapping[str, Mapping[str, Rule]] = {
    "users": ACCOUNT,
    "sessions": SESSIONS,
    "refresh_tokens": REFRESH_TOKENS,
    "activity": ACTIVITY,
    "sign_in_challenges": CHALLENGES,
    "resend_requests": ASKS,
}

EXPLANATION = (
    "Everything this service keeps about your account, as stored when this file was made. Left out, and "
    "never shown: your password's hash, and the hashes and digests that stand for tokens, codes and links."
)


class ExportUsers(Protocol):
    def raw(self, user_id: str) -> dict | None: ...


class ExportSessions(Protocol):
    def of_user(self, user_id: str) -> tuple[list[dict], list[dict]]: ...


class ExportByUser(Protocol):
    def of_user(self, user_id: str) -> list[dict]: ...


class ExportByAddress(Protocol):
    def of_address(self, email: str) -> list[dict]: ...


class ActivityDocuments(Protocol):
    def documents_of(self, user_id: str) -> list[dict]: ...


class AccountExport:
    def __init__(
        self,
        users: ExportUsers,
        session_store: ExportSessions,
        challenges: ExportByUser,
        asks: ExportByAddress,
        activity: ActivityLog,
        sessions: Authenticator,
        hasher: PasswordHasher,
        clock: Callable[[], float] = time.time,
    ):
        self._users = users
        self._session_store = session_store
        self._challenges = challenges
        self._asks = asks
        self._activity = activity
        self._sessions = sessions
        self._hasher = hasher
        self._clock = clock

    def export(self, access_token: str | None, password: str) -> dict[str, Any]:
        """The account's export, for the holder of a valid token who also gives the password."""
        user = self._sessions.authenticate(access_token)
        if not self._hasher.verify(password, user.password_hash):
            raise InvalidCredentials("The password is incorrect.")
        stored = self._users.raw(user.id)
        if stored is None:
            raise InvalidCredentials("The password is incorrect.")
        sessions, refresh_tokens = self._session_store.of_user(user.id)
        asks = [ask for email in {user.email, user.pending_email} if email for ask in self._asks.of_address(email)]
        document: dict[str, Any] = {
            "about_this_file": EXPLANATION,
            "exported_at": _plain(datetime.fromtimestamp(self._clock(), UTC)),
        }
        document.update(project(stored, ACCOUNT))
        document["sessions"] = [project(session, SESSIONS) for session in sessions]
        document["refresh_token_history"] = [project(token, REFRESH_TOKENS) for token in refresh_tokens]
        document["activity"] = [project(entry, ACTIVITY) for entry in self._activity.documents_of(user.id)]
        document["sign_in_challenges"] = [project(entry, CHALLENGES) for entry in self._challenges.of_user(user.id)]
        document["codes_asked_for_by_address"] = [project(ask, ASKS) for ask in asks]
        log.info("account exported", extra={"user_id": user.id})
        return document


def project(document: Mapping[str, Any], spec: Mapping[str, Rule]) -> dict[str, Any]:
    """A stored document as the export shows it: each field under its readable name and group; secrets,
    and fields the spec does not name, left out."""
    out: dict[str, Any] = {}
    for key, value in document.items():
        rule = spec.get(key)
        if rule is None:
            log.warning("stored field with no export rule left out", extra={"field": key})
            continue
        if isinstance(rule, Secret):
            continue
        if isinstance(rule, Nested):
            shown: Any
            if isinstance(value, list):
                shown = [project(item, rule.spec) for item in value if isinstance(item, Mapping)]
            elif isinstance(value, Mapping):
                shown = project(value, rule.spec)
            else:
                shown = _plain(value)
            _place(out, rule.group, rule.name, shown)
        else:
            _place(out, rule.group, rule.name, _plain(value))
    return out


def _place(out: dict[str, Any], group: str | None, name: str, value: Any) -> None:
    (out.setdefault(group, {}) if group else out)[name] = value


def _plain(value: Any) -> Any:
    """JSON of a stored value: times in RFC 3339 (stored ones are UTC), the rest as it is."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
