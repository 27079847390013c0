"""Pending codes in Redis: one hash per purpose and address, living ``CODE_TTL_SECONDS``.

The purpose is part of every key (the code, its quota), so a password-reset
code never replaces a pending registration's, nor spends its quota.

Each guess is judged in one round trip: the ``JUDGE_ATTEMPT`` Lua script reads
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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping
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

# KEYS: lock, pending, sent, consumed. ARGV: holder, hold ms, message id, sequence, now, per hour, per day, ttl,
# '1' if a request over the quota voids the live code, then the record's field/value pairs (with its code), then
# those of the voided record (without).
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
local fields_count = (#ARGV - 9) / 2
if not redis.call('ZSCORE', KEYS[3], ARGV[3]) then
  local last_hour = redis.call('ZCOUNT', KEYS[3], now - 3600, '+inf')
  local last_day = redis.call('ZCOUNT', KEYS[3], now - 86400, '+inf')
  -- Over the quota: nothing mailed. A registration voids the earlier codes all the same (the contract:
  -- registering again voids them); for every other purpose the live code is left as it is, since a request
  -- anyone can make by address (forgot, sign-in) must not void the code its owner holds.
  if last_hour >= tonumber(ARGV[6]) or last_day >= tonumber(ARGV[7]) then
    if ARGV[9] == '1' then
      redis.call('DEL', KEYS[2])
      redis.call('HSET', KEYS[2], unpack(ARGV, 10 + fields_count, #ARGV))
      redis.call('EXPIRE', KEYS[2], ttl)
    end
    release()
    return 'over_quota'
  end
  redis.call('ZADD', KEYS[3], now, ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 86400)
  redis.call('EXPIRE', KEYS[3], 86400)
end
if not same then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], unpack(ARGV, 10, 9 + fields_count))
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


# KEYS: pending. ARGV: the seen field, the proof ('code' or 'link'), the presented digest, max attempts,
# submitted_at ('' when the submission has none), the attempt id, '1' if the purpose answers decoys, the code's
# TTL, the account's daily guess budget ('' for none), '1' if from a proven device, now, the prefix of the
# budget's key (the account id completes it: the account is known only once the record is read, here).
# Returns the verdict's JSON.
#
# The verdict rules are ``judge_attempt``'s (email_service/domain/codes.py), their spec; this script runs
# the same rules inside Redis, so that reading the record, judging and writing are one atomic round trip.
# Change both together: tests/unit/test_judge_script.py runs every branch of both and compares them.
# The record is read as ``_parse`` reads it (a missing field is its default). A verdict that spends or
# burns the code is written with the verdict under the seen field, at once; an expired code writes
# nothing. Times compare as numbers: tonumber on Python's repr(float) gives back the same double.
# Digests compare with ==, not in constant time: compare_digest keeps a client from timing the
# comparison, and no timing from inside Redis reaches a client across the queue.
JUDGE_ATTEMPT = r"""
local record = redis.call('HMGET', KEYS[1], ARGV[1], 'user_id', 'consumed_by', 'voided', 'requested_at',
  'code_digest', 'attempts', 'link_digest', 'sequence', 'decoy_attempts')
if record[1] then return record[1] end
local user_id, consumed_by, voided, requested_at = record[2], record[3], record[4] == '1', record[5] or '0'
local code_digest, attempts, link_digest, sequence = record[6] or '', tonumber(record[7] or '0'), record[8] or '',
  record[9] or '0'
local decoy_attempts = tonumber(record[10] or '0')
local proof, presented, max_attempts, submitted_at = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local decoys, ttl, allowed, proven, now = ARGV[7] == '1', ARGV[8], ARGV[9], ARGV[10] == '1', tonumber(ARGV[11])

local json_escapes = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n',
  ['\r'] = '\\r', ['\t'] = '\\t'}
local function json_string(text)
  local escaped = text:gsub('[%c"\\]', function(c) return json_escapes[c] or string.format('\\u%04x', c:byte()) end)
  return '"' .. escaped .. '"'
end
-- As _judgement_to_json writes it (json.dumps), byte for byte for an ASCII user id. The sequence is
-- stored as _fields writes it, str(int): already a JSON number.
local function judged(verdict, attempts_left, user, seq)
  return '{"verdict": "' .. verdict .. '", "attempts_left": ' .. string.format('%d', attempts_left) ..
    ', "user_id": ' .. (user and json_string(user) or 'null') .. ', "sequence": ' .. (seq or 'null') .. '}'
end
local expired = judged('code_expired', 0)
-- The guess's verdict under its seen field (a redelivery returns it), with what it spends, in one write.
local function written(verdict, ...)
  redis.call('HSET', KEYS[1], ARGV[1], verdict, ...)
  return verdict
end
local function verified() return written(judged('verified', 0, user_id, sequence), 'consumed_by', ARGV[6]) end
-- Burned: even the right code is refused from now on.
local function too_many() return written(judged('too_many_attempts', 0), 'attempts', ARGV[4], 'code_digest', '') end
-- No live code, for a purpose asked for by address alone: answered as a live code would be, counting down.
local function decoyed()
  local left = max_attempts - decoy_attempts - 1
  local verdict = left <= 0 and judged('too_many_attempts', 0) or judged('invalid_code', left)
  written(verdict, 'decoy_attempts', string.format('%d', decoy_attempts + 1))
  if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ttl) end
  return verdict
end
-- The account's wrong codes of the last day, over every purpose (a sorted set of guesses by time).
local budget = ARGV[12] .. (user_id or '')
local function spent() return redis.call('ZCOUNT', budget, now - 86400, '+inf') end
local function charged()
  if allowed == '' then return end
  redis.call('ZADD', budget, now, ARGV[6])
  redis.call('ZREMRANGEBYSCORE', budget, '-inf', now - 86400)
  redis.call('EXPIRE', budget, 86400)
end

if not user_id or consumed_by or voided then
  if decoys and proof == 'code' then return decoyed() end
  return expired
end
if submitted_at ~= '' and tonumber(submitted_at) < tonumber(requested_at) then return expired end
if code_digest == '' or attempts >= max_attempts then return too_many() end
if proof == 'link' then
  -- A link that does not match is an older code's (its token is too long to guess): nothing spent.
  if link_digest ~= '' and link_digest == presented then return verified() end
  return expired
end
-- The day's budget spent: refused, right or wrong, and nothing of the code spent.
if allowed ~= '' and not proven and spent() >= tonumber(allowed) then
  return written(judged('too_many_attempts', 0))
end
if code_digest == presented then return verified() end
charged()
local attempts_left = max_attempts - attempts - 1
if attempts_left <= 0 then return too_many() end
return written(judged('invalid_code', attempts_left), 'attempts', string.format('%d', attempts + 1))
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
        self._judge_attempt = client.register_script(JUDGE_ATTEMPT)
        self._discard_consumed = client.register_script(DISCARD_CONSUMED)

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
        args = [
            holder,
            _milliseconds(hold_seconds),
            pending.message_id,
            pending.sequence,
            repr(now),
            per_hour,
            per_day,
            ttl_seconds,
            int(slot.purpose in VOIDED_OVER_QUOTA),
            *_flat(_fields(pending)),
            *_flat(_fields(dataclasses.replace(pending, code_digest="", link_digest="", voided=True))),
        ]
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
        args = [
            f"{SEEN_PREFIX}{attempt_id}",
            presented.proof.value,
            presented.digest,
            max_attempts,
            # repr: the shortest text that parses back to the same double, in Lua as in Python.
            "" if submitted_at is None else repr(submitted_at),
            attempt_id,
            int(rules.decoys),
            max(1, rules.ttl_seconds),
            "" if rules.budget is None else rules.budget,
            int(rules.proven_device),
            repr(rules.now),
            f"{self._prefix}:guesses:",
        ]
        return _judgement_from_json(reply(self._judge_attempt(keys=[self._slot_key("pending", slot)], args=args)))

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
    """The verdict's JSON as a seen field holds it; ``JUDGE_ATTEMPT`` writes the same text."""
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
