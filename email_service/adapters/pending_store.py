"""Pending codes in Redis: one hash per purpose and address, living ``CODE_TTL_SECONDS``.

The purpose is part of every key (the code, its quota), so a password-reset
code never replaces a pending registration's, nor spends its quota.

Each guess is judged inside an optimistic transaction (WATCH/MULTI): if another
guess changed the code in between, the transaction is retried, so
parallel guesses can never spend more attempts than allowed. Every guess is
remembered by its message id, so a redelivered guess returns the same verdict
without spending another attempt.

A new code replaces the stored one the same way, and only if its request is
newer (a higher sequence number), so an older request handled late can never
bring back a voided code. Mailing a code holds the slot's mailing lock (a key
with a holder and an expiry), so two workers never mail one slot's codes at
once and they arrive in the order they were stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import overload

import redis

from common.redis_replies import reply
from email_service.domain.codes import (
    Judgement,
    PendingCode,
    Presented,
    Purpose,
    Slot,
    Verdict,
    judge_attempt,
    within_quota,
)

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400
SEEN_PREFIX = "seen:"
LOCK_POLL_SECONDS = 0.02


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

    def _slot_key(self, kind: str, slot: Slot) -> str:
        # Addresses are hashed so keys do not spell out personal data.
        return f"{self._prefix}:{kind}:{slot.purpose}:{hashlib.sha256(slot.email.encode()).hexdigest()}"

    def get(self, slot: Slot) -> PendingCode | None:
        return _parse(reply(self._redis.hgetall(self._slot_key("pending", slot))))

    def replace(self, pending: PendingCode, ttl_seconds: int) -> bool:
        key = self._slot_key("pending", pending.slot)
        fields = {
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
        replaced: list[bool] = []

        def write(pipe: redis.client.Pipeline) -> None:
            replaced.clear()
            current = _parse(reply(pipe.hgetall(key)))
            replaced.append(current is None or current.superseded_by(pending.sequence))
            if replaced[0]:
                pipe.multi()
                pipe.delete(key)
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ttl_seconds)

        self._redis.transaction(write, key)
        if replaced[0]:
            self._await_replicas()
        return replaced[0]

    def _await_replicas(self) -> None:
        if not self._replicas:
            return
        acknowledged = int(reply(self._redis.wait(self._replicas, self._replica_timeout_ms)))
        if acknowledged < self._replicas:
            log.warning(
                "a stored code reached fewer Redis replicas than asked",
                extra={"replicas": acknowledged, "asked": self._replicas, "timeout_ms": self._replica_timeout_ms},
            )

    def lock_slot(self, slot: Slot, holder: str, hold_seconds: float, wait_seconds: float) -> bool:
        key = self._slot_key("mailing", slot)
        deadline = time.monotonic() + wait_seconds
        while True:
            if self._redis.set(key, holder, nx=True, px=max(1, int(hold_seconds * 1000))):
                return True
            if _text(reply(self._redis.get(key))) == holder:  # a retry of the same message after Redis hiccuped
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOCK_POLL_SECONDS)

    def unlock_slot(self, slot: Slot, holder: str) -> None:
        key = self._slot_key("mailing", slot)

        def release(pipe: redis.client.Pipeline) -> None:
            if _text(reply(pipe.get(key))) == holder:  # never free a lock that expired and went to someone else
                pipe.multi()
                pipe.delete(key)

        self._redis.transaction(release, key)

    def mark_mail_sent(self, slot: Slot, message_id: str) -> None:
        key = self._slot_key("pending", slot)

        def mark(pipe: redis.client.Pipeline) -> None:
            if _text(reply(pipe.hget(key, "message_id"))) == message_id:
                pipe.multi()
                pipe.hset(key, "mail_sent", "1")

        self._redis.transaction(mark, key)

    def attempt(
        self, slot: Slot, presented: Presented, attempt_id: str, max_attempts: int, submitted_at: float | None = None
    ) -> Judgement:
        key = self._slot_key("pending", slot)
        outcome: list[Judgement] = []

        def judge(pipe: redis.client.Pipeline) -> None:
            outcome.clear()
            raw = reply(pipe.hgetall(key))
            seen = raw.get(f"{SEEN_PREFIX}{attempt_id}".encode())
            if seen is not None:
                outcome.append(_judgement_from_json(seen))
                return
            pending = _parse(raw)
            judgement = judge_attempt(pending, presented, max_attempts, submitted_at)
            outcome.append(judgement)
            if pending is None or judgement.verdict is Verdict.CODE_EXPIRED:
                return
            pipe.multi()
            pipe.hset(key, f"{SEEN_PREFIX}{attempt_id}", _judgement_to_json(judgement))
            if judgement.verdict is Verdict.VERIFIED:
                pipe.hset(key, "consumed_by", attempt_id)
            elif judgement.verdict is Verdict.INVALID_CODE:
                pipe.hincrby(key, "attempts", 1)
            else:
                pipe.hset(key, mapping={"attempts": max_attempts, "code_digest": ""})

        self._redis.transaction(judge, key)
        return outcome[0]

    def discard_consumed(self, slot: Slot, attempt_id: str) -> None:
        key = self._slot_key("pending", slot)

        def discard(pipe: redis.client.Pipeline) -> None:
            if _text(reply(pipe.hget(key, "consumed_by"))) == attempt_id:
                pipe.multi()
                pipe.delete(key)

        self._redis.transaction(discard, key)

    def reserve_code(self, slot: Slot, message_id: str, now: float, per_hour: int, per_day: int) -> bool:
        """Count this request's code against the slot's hourly and daily quota; False if over it.

        Checked and counted in one optimistic transaction, so parallel requests
        cannot both take the last slot. A request already counted (a
        redelivery) is allowed again without counting twice.
        """
        key = self._slot_key("sent", slot)
        allowed: list[bool] = []

        def reserve(pipe: redis.client.Pipeline) -> None:
            allowed.clear()
            if pipe.zscore(key, message_id) is not None:
                allowed.append(True)
                return
            last_hour: int = reply(pipe.zcount(key, now - HOUR, "+inf"))
            last_day: int = reply(pipe.zcount(key, now - DAY, "+inf"))
            allowed.append(within_quota(last_hour, last_day, per_hour, per_day))
            if allowed[0]:
                pipe.multi()
                pipe.zadd(key, {message_id: now})
                pipe.zremrangebyscore(key, "-inf", now - DAY)
                pipe.expire(key, DAY)

        self._redis.transaction(reserve, key)
        return allowed[0]

    def notice_sent(self, message_id: str) -> bool:
        return bool(self._redis.exists(self._notice_key(message_id)))

    def record_notice_sent(self, message_id: str) -> None:
        # A day is far longer than any redelivery of one message takes.
        self._redis.set(self._notice_key(message_id), 1, ex=DAY)

    def _notice_key(self, message_id: str) -> str:
        return f"{self._prefix}:notice:{hashlib.sha256(message_id.encode()).hexdigest()}"


@overload
def _text(value: bytes | str) -> str: ...
@overload
def _text(value: bytes | str | None) -> str | None: ...
def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _parse(raw: Mapping[bytes | str, bytes | str]) -> PendingCode | None:
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


def _judgement_to_json(judgement: Judgement) -> str:
    return json.dumps(
        {
            "verdict": judgement.verdict.value,
            "attempts_left": judgement.attempts_left,
            "user_id": judgement.user_id,
            "sequence": judgement.sequence,
        }
    )


def _judgement_from_json(raw: bytes) -> Judgement:
    data = json.loads(raw)
    return Judgement(Verdict(data["verdict"]), data["attempts_left"], data["user_id"], data.get("sequence"))
