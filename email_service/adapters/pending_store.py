"""Pending registrations in Redis: one hash per address, living ``CODE_TTL_SECONDS``.

Each guess is judged inside an optimistic transaction (WATCH/MULTI): if another
guess changed the registration in between, the transaction is retried, so
parallel guesses can never spend more attempts than allowed. Every guess is
remembered by its message id, so a redelivered guess returns the same verdict
without spending another attempt.

A new code replaces the stored one the same way, and only if its request is
newer (a higher sequence number), so an older request handled late can never
bring back a voided code. Mailing a code holds the address's mailing lock (a
key with a holder and an expiry), so two workers never mail one address at
once and its mails arrive in the order its codes were stored.
"""

from __future__ import annotations

import hashlib
import json
import time

import redis

from email_service.domain.codes import Judgement, PendingRegistration, Verdict, judge_attempt, within_quota

HOUR = 3600
DAY = 86400
SEEN_PREFIX = "seen:"
LOCK_POLL_SECONDS = 0.02


class RedisPendingRegistrations:
    def __init__(self, client: redis.Redis, key_prefix: str):
        self._redis = client
        self._prefix = key_prefix

    def _address_key(self, kind: str, email: str) -> str:
        # Addresses are hashed so keys do not spell out personal data.
        return f"{self._prefix}:{kind}:{hashlib.sha256(email.encode()).hexdigest()}"

    def get(self, email: str) -> PendingRegistration | None:
        return _parse(self._redis.hgetall(self._address_key("pending", email)))

    def replace(self, pending: PendingRegistration, ttl_seconds: int) -> bool:
        key = self._address_key("pending", pending.email)
        fields = {
            "email": pending.email,
            "user_id": pending.user_id,
            "code_digest": pending.code_digest,
            "attempts": pending.attempts,
            "message_id": pending.message_id,
            "requested_at": repr(pending.requested_at),
            "mail_sent": int(pending.mail_sent),
            "sequence": pending.sequence,
            "voided": int(pending.voided),
        }
        replaced: list[bool] = []

        def write(pipe: redis.client.Pipeline) -> None:
            replaced.clear()
            current = _parse(pipe.hgetall(key))
            replaced.append(current is None or current.superseded_by(pending.sequence, pending.message_id))
            if replaced[0]:
                pipe.multi()
                pipe.delete(key)
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ttl_seconds)

        self._redis.transaction(write, key)
        return replaced[0]

    def lock_address(self, email: str, holder: str, hold_seconds: float, wait_seconds: float) -> bool:
        key = self._address_key("mailing", email)
        deadline = time.monotonic() + wait_seconds
        while True:
            if self._redis.set(key, holder, nx=True, px=max(1, int(hold_seconds * 1000))):
                return True
            if _text(self._redis.get(key)) == holder:  # a retry of the same message after Redis hiccuped
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOCK_POLL_SECONDS)

    def unlock_address(self, email: str, holder: str) -> None:
        key = self._address_key("mailing", email)

        def release(pipe: redis.client.Pipeline) -> None:
            if _text(pipe.get(key)) == holder:  # never free a lock that expired and went to someone else
                pipe.multi()
                pipe.delete(key)

        self._redis.transaction(release, key)

    def mark_mail_sent(self, email: str, message_id: str) -> None:
        key = self._address_key("pending", email)

        def mark(pipe: redis.client.Pipeline) -> None:
            if _text(pipe.hget(key, "message_id")) == message_id:
                pipe.multi()
                pipe.hset(key, "mail_sent", 1)

        self._redis.transaction(mark, key)

    def attempt(
        self, email: str, presented_digest: str, attempt_id: str, max_attempts: int, submitted_at: float | None = None
    ) -> Judgement:
        key = self._address_key("pending", email)
        outcome: list[Judgement] = []

        def judge(pipe: redis.client.Pipeline) -> None:
            outcome.clear()
            raw = pipe.hgetall(key)
            seen = raw.get(f"{SEEN_PREFIX}{attempt_id}".encode())
            if seen is not None:
                outcome.append(_judgement_from_json(seen))
                return
            pending = _parse(raw)
            judgement = judge_attempt(pending, presented_digest, max_attempts, submitted_at)
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

    def discard_consumed(self, email: str, attempt_id: str) -> None:
        key = self._address_key("pending", email)

        def discard(pipe: redis.client.Pipeline) -> None:
            if _text(pipe.hget(key, "consumed_by")) == attempt_id:
                pipe.multi()
                pipe.delete(key)

        self._redis.transaction(discard, key)

    def reserve_code(self, email: str, message_id: str, now: float, per_hour: int, per_day: int) -> bool:
        """Count this request's code against the address's hourly and daily quota; False if over it.

        Checked and counted in one optimistic transaction, so parallel requests
        cannot both take the last slot. A request already counted (a
        redelivery) is allowed again without counting twice.
        """
        key = self._address_key("sent", email)
        allowed: list[bool] = []

        def reserve(pipe: redis.client.Pipeline) -> None:
            allowed.clear()
            if pipe.zscore(key, message_id) is not None:
                allowed.append(True)
                return
            last_hour = pipe.zcount(key, now - HOUR, "+inf")
            last_day = pipe.zcount(key, now - DAY, "+inf")
            allowed.append(within_quota(last_hour, last_day, per_hour, per_day))
            if allowed[0]:
                pipe.multi()
                pipe.zadd(key, {message_id: now})
                pipe.zremrangebyscore(key, "-inf", now - DAY)
                pipe.expire(key, DAY)

        self._redis.transaction(reserve, key)
        return allowed[0]


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _parse(raw: dict) -> PendingRegistration | None:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if "user_id" not in fields:
        return None
    return PendingRegistration(
        email=fields["email"],
        user_id=fields["user_id"],
        code_digest=fields.get("code_digest", ""),
        attempts=int(fields.get("attempts", 0)),
        message_id=fields.get("message_id", ""),
        requested_at=float(fields.get("requested_at", 0)),
        mail_sent=fields.get("mail_sent") == "1",
        consumed_by=fields.get("consumed_by"),
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
