"""Pending codes in Redis: one hash per purpose and address, living ``CODE_TTL_SECONDS``.

The purpose is part of every key (the code, its quota), so a password-reset
code never replaces a pending registration's, nor spends its quota.

Each guess is judged optimistically: the record is read, the verdict reached
(``judge_attempt``), and a Lua script writes it only if the record is still as
read; if another guess changed it in between, the script answers the record as
it now stands and the guess is judged again on that, so parallel guesses can
never spend more attempts than allowed. Every guess is remembered by its
message id, so a redelivered guess returns the same verdict without spending
another attempt.

The read is skipped when this process wrote the record last (it stored the
code, or judged the previous guess): the guess is judged on the record as
written, in one round trip. That is only a guess at the record; the script's
check makes it safe (a stale one costs the same two trips as a read), and a
verdict that writes nothing (an expired code) is never given on it.

A new code replaces the stored one the same way, and only if its request is
newer (a higher sequence number), so an older request handled late can never
bring back a voided code. Mailing a code holds the slot's mailing lock (a key
with a holder and an expiry), so two workers never mail one slot's codes at
once and they arrive in the order they were stored.

Issuing a code is two Lua scripts, one round trip each: ``start_issue``
(lock, dedupe, quota, store) before the mail and ``finish_issue`` (mark sent,
unlock) after it. A script runs atomically, so it needs no WATCH/MULTI retry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
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
)
from email_service.ports import IssueStart

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400
SEEN_PREFIX = "seen:"
LOCK_POLL_SECONDS = 0.02

# KEYS: lock, pending, sent, consumed. ARGV: holder, hold ms, message id, sequence, now, per hour, per day, ttl,
# then the record's field/value pairs (with its code), then those of the voided record (without).
START_ISSUE = """
local unpack = unpack or table.unpack
local function release()
  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 'locked'
end
local current = redis.call('HMGET', KEYS[2], 'user_id', 'message_id', 'voided', 'mail_sent', 'sequence')
local exists = current[1] ~= false
local same = exists and current[2] == ARGV[3] and current[3] ~= '1'
-- Its code was mailed and spent since (the worker lost the message before its ack): never again.
if not exists and redis.call('GET', KEYS[4]) == ARGV[3] then release() return 'sent' end
if same and current[4] == '1' then release() return 'sent' end
if exists and tonumber(ARGV[4]) < tonumber(current[5] or '0') then release() return 'outdated' end
local now = tonumber(ARGV[5])
local ttl = tonumber(ARGV[8])
local fields_count = (#ARGV - 8) / 2
if not redis.call('ZSCORE', KEYS[3], ARGV[3]) then
  local last_hour = redis.call('ZCOUNT', KEYS[3], now - 3600, '+inf')
  local last_day = redis.call('ZCOUNT', KEYS[3], now - 86400, '+inf')
  if last_hour >= tonumber(ARGV[6]) or last_day >= tonumber(ARGV[7]) then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[2], unpack(ARGV, 9 + fields_count, #ARGV))
    redis.call('EXPIRE', KEYS[2], ttl)
    release()
    return 'over_quota'
  end
  redis.call('ZADD', KEYS[3], now, ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 86400)
  redis.call('EXPIRE', KEYS[3], 86400)
end
if not same then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], unpack(ARGV, 9, 8 + fields_count))
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 'stored'
"""

# KEYS: pending, lock. ARGV: message id, holder, 1 if the mail was sent.
FINISH_ISSUE = """
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 'message_id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'mail_sent', '1')
end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
"""


# What a verdict depends on: a guess is written only if none of these changed since it was judged.
JUDGED_FIELDS = ("attempts", "code_digest", "consumed_by", "message_id", "voided", "requested_at")

# KEYS: pending. ARGV: the seen field, the JUDGED_FIELDS as read, the verdict's JSON, then the change:
# consumed_by <attempt id> | attempts <new count> | burn <max attempts>. Returns 1 when written, else the
# record as it stands (HGETALL), to judge again without another read.
APPLY_ATTEMPT = """
local current = redis.call('HMGET', KEYS[1], 'attempts', 'code_digest', 'consumed_by', 'message_id', 'voided',
  'requested_at', ARGV[1])
if current[7] then return redis.call('HGETALL', KEYS[1]) end
for index = 1, 6 do
  if (current[index] or '') ~= ARGV[index + 1] then return redis.call('HGETALL', KEYS[1]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[8])
if ARGV[9] == 'burn' then
  redis.call('HSET', KEYS[1], 'attempts', ARGV[10], 'code_digest', '')
else
  redis.call('HSET', KEYS[1], ARGV[9], ARGV[10])
end
return 1
"""

# KEYS: pending, consumed. ARGV: the submission that spent the code, how long to remember its request.
# The spent code's request is remembered so that its redelivery does not store and mail that code again.
DISCARD_CONSUMED = """
if redis.call('HGET', KEYS[1], 'consumed_by') == ARGV[1] then
  local request = redis.call('HGET', KEYS[1], 'message_id')
  if request then redis.call('SET', KEYS[2], request, 'EX', ARGV[2]) end
  redis.call('DEL', KEYS[1])
end
return 1
"""


# Records this process wrote last, by key: a few thousand slots, about a kilobyte each.
WRITTEN_RECORDS_KEPT = 4096


class WrittenRecords:
    """The pending records this process wrote last, newest kept, shared by its consumer threads."""

    def __init__(self, kept: int):
        self._kept = kept
        self._records: OrderedDict[str, dict[bytes, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[bytes, bytes] | None:
        with self._lock:
            record = self._records.get(key)
            return None if record is None else dict(record)

    def put(self, key: str, record: dict[bytes, bytes]) -> None:
        with self._lock:
            self._records[key] = record
            self._records.move_to_end(key)
            while len(self._records) > self._kept:
                self._records.popitem(last=False)

    def forget(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)


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
        self._start_issue = client.register_script(START_ISSUE)
        self._finish_issue = client.register_script(FINISH_ISSUE)
        self._apply_attempt = client.register_script(APPLY_ATTEMPT)
        self._discard_consumed = client.register_script(DISCARD_CONSUMED)
        self._written = WrittenRecords(WRITTEN_RECORDS_KEPT)

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
        voided = dataclasses.replace(pending, code_digest="", link_digest="", voided=True)
        args = [
            holder,
            _milliseconds(hold_seconds),
            pending.message_id,
            pending.sequence,
            repr(now),
            per_hour,
            per_day,
            ttl_seconds,
            *_flat(_fields(pending)),
            *_flat(_fields(voided)),
        ]
        deadline = time.monotonic() + wait_seconds
        while True:
            started = IssueStart(_text(reply(self._start_issue(keys=keys, args=args))))
            self._remember_issue(keys[1], started, pending)
            if started is IssueStart.STORED:
                self._await_replicas()
            if started is not IssueStart.LOCKED or time.monotonic() >= deadline:
                return started
            time.sleep(LOCK_POLL_SECONDS)

    def _remember_issue(self, key: str, started: IssueStart, pending: PendingCode) -> None:
        if started is IssueStart.STORED:
            # As the script wrote it, unless the slot already held this request's code (then it may have
            # guesses on it): a wrong memory only costs the first guess the read it would have made anyway.
            self._written.put(key, {str(k).encode(): str(v).encode() for k, v in _fields(pending).items()})
        elif started is not IssueStart.LOCKED:
            self._written.forget(key)

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
        self, slot: Slot, presented: Presented, attempt_id: str, max_attempts: int, submitted_at: float | None = None
    ) -> Judgement:
        key = self._slot_key("pending", slot)
        seen_field = f"{SEEN_PREFIX}{attempt_id}"
        raw = self._written.get(key)
        read = raw is None
        while True:
            if raw is None:
                raw = reply(self._redis.hgetall(key))
                read = True
            seen = raw.get(seen_field.encode())
            if seen is not None:
                return _judgement_from_json(seen)
            pending = _parse(raw)
            judgement = judge_attempt(pending, presented, max_attempts, submitted_at)
            if pending is None or judgement.verdict is Verdict.CODE_EXPIRED:
                if not read:
                    raw = None  # a verdict that writes nothing is given only on the record as read
                    continue
                self._written.forget(key)
                return judgement
            if judgement.verdict is Verdict.VERIFIED:
                change = ["consumed_by", attempt_id]
            elif judgement.verdict is Verdict.INVALID_CODE:
                change = ["attempts", str(pending.attempts + 1)]
            else:
                change = ["burn", str(max_attempts)]
            expected = [_text(raw.get(name.encode(), b"")) for name in JUDGED_FIELDS]
            # Written only if the record is as judged; else the script answers it as it stands: judge again.
            args = [seen_field, *expected, _judgement_to_json(judgement), *change]
            written = reply(self._apply_attempt(keys=[key], args=args))
            if not isinstance(written, list):
                self._written.put(key, {**_unseen(raw), **_changed_fields(change)})
                return judgement
            raw = dict(zip(written[::2], written[1::2], strict=True))
            read = True

    def discard_consumed(self, slot: Slot, attempt_id: str) -> None:
        self._written.forget(self._slot_key("pending", slot))
        keys = [self._slot_key("pending", slot), self._slot_key("consumed", slot)]
        # A day is far longer than any redelivery of one message takes.
        self._discard_consumed(keys=keys, args=[attempt_id, DAY])

    def notice_sent(self, message_id: str) -> bool:
        return bool(self._redis.exists(self._notice_key(message_id)))

    def record_notice_sent(self, message_id: str) -> None:
        # A day is far longer than any redelivery of one message takes.
        self._redis.set(self._notice_key(message_id), 1, ex=DAY)

    def _notice_key(self, message_id: str) -> str:
        return f"{self._prefix}:notice:{hashlib.sha256(message_id.encode()).hexdigest()}"


def _fields(pending: PendingCode) -> dict[str, str | int]:
    return {
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


def _flat(fields: Mapping[str, str | int]) -> list[str | int]:
    return [item for pair in fields.items() for item in pair]


def _unseen(raw: Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    """The record without the verdicts of earlier guesses (each one is looked up in Redis)."""
    return {name: value for name, value in raw.items() if not name.startswith(SEEN_PREFIX.encode())}


def _changed_fields(change: list[str]) -> dict[bytes, bytes]:
    """What ``APPLY_ATTEMPT`` wrote for ``change`` (besides the guess's verdict)."""
    name, value = change
    if name == "burn":
        return {b"attempts": value.encode(), b"code_digest": b""}
    return {name.encode(): value.encode()}


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
