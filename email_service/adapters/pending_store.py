"""Pending codes in Redis: one hash per purpose and address, living ``CODE_TTL_SECONDS``.

The purpose is part of every key (the code, its quota), so a password-reset
code never replaces a pending registration's, nor spends its quota.

Each guess is judged in one round trip: the ``judge_attempt.lua`` script reads
the record, reaches the verdict, writes it and returns it, atomically, so
parallel guesses can never spend more attempts than allowed. The verdict rules
are ``judge_attempt``'s (the domain's spec, in Python); the script is this
adapter's implementation of the same rules, and
``tests/unit/test_judge_script.py`` checks the two agree on every kind of
record. Every guess is remembered by its message id, so a redelivered guess
returns the same verdict without spending another attempt.

A new code replaces the stored one only if its request is newer (a higher
sequence number), so an older request handled late can never bring back a
voided code. Mailing a code holds the slot's mailing lock (a key
with a holder and an expiry), so two workers never mail one slot's codes at
once and they arrive in the order they were stored.

Issuing a code is two Lua scripts, one round trip each: ``start_issue``
(lock, dedupe, quota, store) before the mail and ``finish_issue`` (mark sent,
unlock) after it. A script runs atomically, so it needs no WATCH/MULTI retry.
The quota and "the newer request wins" live in ``start_issue.lua`` only, and
``tests/unit/test_issue_script.py`` checks them as properties (hypothesis).

The scripts are files beside this one (``lua/``), read when the store is
built; each takes its arguments as one JSON object of named values and
answers with a Redis reply (a word, or an array), never hand-written JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import overload

import redis

from common.redis_replies import reply
from email_service.domain.codes import (
    VOIDED_OVER_QUOTA,
    GuessRules,
    Judgement,
    PendingCode,
    Presented,
    Purpose,
    Slot,
    Verdict,
)
from email_service.ports import IssueStart

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400
SEEN_PREFIX = "seen:"
LOCK_POLL_SECONDS = 0.02

# The scripts, read once when the store is built (email_service/adapters/lua/*.lua).
SCRIPTS = Path(__file__).parent / "lua"


def script_text(name: str) -> str:
    return (SCRIPTS / f"{name}.lua").read_text()


class RedisPendingCodes:
    """``replicas``: after storing a code, wait (``WAIT``, at most ``replica_timeout_ms``) until that
    many replicas hold it, so the mail that follows never carries a code an asynchronous replica
    promoted by Sentinel would not know. A replica that does not answer in time is logged and the
    mail goes out all the same: a lone primary keeps mailing."""

    def __init__(self, client: redis.Redis, key_prefix: str, replicas: int = 0, replica_timeout_ms: int = 500):
        self._redis = client
        self._prefix = key_prefix
        self._replicas = replicas
        self._replica_timeout_ms = replica_timeout_ms
        self._start_issue = client.register_script(script_text("start_issue"))
        self._finish_issue = client.register_script(script_text("finish_issue"))
        self._judge_attempt = client.register_script(script_text("judge_attempt"))
        self._discard_consumed = client.register_script(script_text("discard_consumed"))

    @property
    def client(self) -> redis.Redis:
        """The Redis the codes live in: the suppression list lives beside them."""
        return self._redis

    def _slot_key(self, kind: str, slot: Slot) -> str:
        # Addresses are hashed so keys do not spell out personal data.
        return f"{self._prefix}:{kind}:{slot.purpose}:{hashlib.sha256(slot.email.encode()).hexdigest()}"

    def get(self, slot: Slot) -> PendingCode | None:
        return _parse(reply(self._redis.hgetall(self._slot_key("pending", slot))))

    def start_issue(
        self,
        pending: PendingCode,
        holder: str,
        *,
        ttl_seconds: int,
        now: float,
        per_hour: int,
        per_day: int,
        hold_seconds: float,
        wait_seconds: float,
    ) -> IssueStart:
        slot = pending.slot
        keys = [
            self._slot_key("mailing", slot),
            self._slot_key("pending", slot),
            self._slot_key("sent", slot),
            self._slot_key("consumed", slot),
        ]
        args = _named(
            holder=holder,
            hold_ms=_milliseconds(hold_seconds),
            message_id=pending.message_id,
            # Text: Lua numbers are doubles, and a sequence (microseconds) must compare exactly.
            sequence=str(pending.sequence),
            now=repr(now),
            per_hour=per_hour,
            per_day=per_day,
            ttl=ttl_seconds,
            voids_over_quota=slot.purpose in VOIDED_OVER_QUOTA,
            record=_fields(pending),
            voided_record=_fields(dataclasses.replace(pending, code_digest="", link_digest="", voided=True)),
        )
        deadline = time.monotonic() + wait_seconds
        while True:
            started = IssueStart(_text(reply(self._start_issue(keys=keys, args=args))))
            if started is IssueStart.STORED:
                self._await_replicas()
            if started is not IssueStart.LOCKED or time.monotonic() >= deadline:
                return started
            time.sleep(LOCK_POLL_SECONDS)

    def _await_replicas(self) -> None:
        if not self._replicas:
            return
        acknowledged = int(reply(self._redis.wait(self._replicas, self._replica_timeout_ms)))
        if acknowledged < self._replicas:
            log.warning(
                "a stored code reached fewer Redis replicas than asked",
                extra={"replicas": acknowledged, "asked": self._replicas, "timeout_ms": self._replica_timeout_ms},
            )

    def finish_issue(self, slot: Slot, message_id: str, holder: str, *, sent: bool) -> None:
        keys = [self._slot_key("pending", slot), self._slot_key("mailing", slot)]
        self._finish_issue(keys=keys, args=[message_id, holder, int(sent)])

    def attempt(
        self,
        slot: Slot,
        presented: Presented,
        attempt_id: str,
        max_attempts: int,
        submitted_at: float | None = None,
        *,
        rules: GuessRules | None = None,
    ) -> Judgement:
        rules = rules or GuessRules()
        args = _named(
            seen=f"{SEEN_PREFIX}{attempt_id}",
            proof=presented.proof.value,
            presented=presented.digest,
            max_attempts=max_attempts,
            # repr: the shortest text that parses back to the same double, in Lua as in Python.
            submitted_at="" if submitted_at is None else repr(submitted_at),
            attempt_id=attempt_id,
            decoys=rules.decoys,
            ttl=max(1, rules.ttl_seconds),
            budget="" if rules.budget is None else rules.budget,
            proven=rules.proven_device,
            now=repr(rules.now),
            budget_prefix=f"{self._prefix}:guesses:",
        )
        return _judgement(reply(self._judge_attempt(keys=[self._slot_key("pending", slot)], args=args)))

    def guesses_spent(self, user_id: str, now: float) -> int:
        """The account's wrong codes in the day before ``now`` (what its guess budget has spent)."""
        return int(reply(self._redis.zcount(f"{self._prefix}:guesses:{user_id}", now - DAY, "+inf")))

    def discard_consumed(self, slot: Slot, attempt_id: str) -> None:
        keys = [self._slot_key("pending", slot), self._slot_key("consumed", slot)]
        # A day is far longer than any redelivery of one message takes.
        self._discard_consumed(keys=keys, args=[attempt_id, DAY])

    def notice_sent(self, message_id: str) -> bool:
        return bool(self._redis.exists(self._notice_key(message_id)))

    def record_notice_sent(self, message_id: str) -> None:
        # A day is far longer than any redelivery of one message takes.
        self._redis.set(self._notice_key(message_id), 1, ex=DAY)

    def erase_address(self, email: str) -> int:
        keys = [
            self._slot_key(kind, Slot(purpose, email))
            for purpose in Purpose
            for kind in ("pending", "mailing", "sent", "consumed")
        ]
        return int(reply(self._redis.delete(*keys)))

    def _notice_key(self, message_id: str) -> str:
        return f"{self._prefix}:notice:{hashlib.sha256(message_id.encode()).hexdigest()}"


def _fields(pending: PendingCode) -> dict[str, str]:
    """The record's fields as stored, each as text (as redis-py would send it)."""
    fields: dict[str, object] = {
        "purpose": pending.slot.purpose.value,
        "email": pending.slot.email,
        "user_id": pending.user_id,
        "code_digest": pending.code_digest,
        "attempts": pending.attempts,
        "message_id": pending.message_id,
        "requested_at": repr(pending.requested_at),
        "mail_sent": int(pending.mail_sent),
        "link_digest": pending.link_digest,
        "sequence": pending.sequence,
        "voided": int(pending.voided),
    }
    return {name: str(value) for name, value in fields.items()}


def _named(**arguments: object) -> list[str]:
    """A script's arguments by name: one JSON object, its ARGV[1]."""
    return [json.dumps(arguments)]


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@overload
def _text(value: bytes | str) -> str: ...
@overload
def _text(value: bytes | str | None) -> str | None: ...
def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _parse(raw: Mapping[bytes, bytes]) -> PendingCode | None:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if "user_id" not in fields:
        return None
    return PendingCode(
        slot=Slot(Purpose(fields["purpose"]), fields["email"]),
        user_id=fields["user_id"],
        code_digest=fields.get("code_digest", ""),
        attempts=int(fields.get("attempts", 0)),
        message_id=fields.get("message_id", ""),
        requested_at=float(fields.get("requested_at", 0)),
        mail_sent=fields.get("mail_sent") == "1",
        consumed_by=fields.get("consumed_by"),
        link_digest=fields.get("link_digest", ""),
        sequence=int(fields.get("sequence", 0)),
        voided=fields.get("voided") == "1",
    )


def _judgement(raw: list) -> Judgement:
    """The verdict as judge_attempt.lua returns it: verdict, attempts left, user id or nil, sequence or nil."""
    verdict, attempts_left, user_id, sequence = raw
    return Judgement(
        Verdict(_text(verdict)),
        int(attempts_left),
        _text(user_id),
        None if sequence is None else int(_text(sequence)),
    )


def seen_text(judgement: Judgement) -> str:
    """What judge_attempt.lua stores under a guess's seen field: cjson's text of the verdict's array."""
    sequence = False if judgement.sequence is None else str(judgement.sequence)
    user_id = False if judgement.user_id is None else judgement.user_id
    fields = [judgement.verdict.value, judgement.attempts_left, user_id, sequence]
    return json.dumps(fields, separators=(",", ":"))
