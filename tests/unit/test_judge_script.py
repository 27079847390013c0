"""The ``judge_attempt.lua`` script gives ``judge_attempt``'s verdicts and writes what they spend.

``judge_attempt`` is the spec of the verdict rules; the script is the pending store's atomic copy of
them. Every kind of record is judged both ways, here on fakeredis (which runs the script in Lua 5.1, as
Redis does); tests/integration/test_judge_script_redis.py runs the same tests on this machine's Redis.
"""

import itertools
import json
import math
import uuid

import fakeredis
import pytest

from email_service.adapters.pending_store import (
    SEEN_PREFIX,
    RedisPendingCodes,
    _fields,
    _parse,
    seen_text,
)
from email_service.domain.codes import (
    GuessBudget,
    GuessRules,
    Judgement,
    PendingCode,
    Presented,
    Proof,
    Purpose,
    Slot,
    Verdict,
    code_digest,
    judge_attempt,
    link_digest,
)

KEY = "k" * 32
SLOT = Slot(Purpose.VERIFY_EMAIL, "a@example.com")
MAX_ATTEMPTS = 3
ATTEMPT_ID = "this-guess"
SEEN_FIELD = f"{SEEN_PREFIX}{ATTEMPT_ID}"
# Not a binary fraction, so its text must parse back to exactly this double for "equal" to be equal.
REQUESTED_AT = 1732790000.123456
CODE_DIGEST = code_digest(KEY, SLOT, "123456")
LINK_DIGEST = link_digest(KEY, SLOT, "the-link-token")

PRESENTED = {
    "right code": Presented.code(KEY, SLOT, "123456"),
    "wrong code": Presented.code(KEY, SLOT, "000000"),
    "right link": Presented.link(KEY, SLOT, "the-link-token"),
    "wrong link": Presented.link(KEY, SLOT, "an-older-link-token"),
    # Never built by the handler; here so that a record without a link can never match an empty one.
    "empty link": Presented(Proof.LINK, ""),
}
# One double either side: the script must compare times exactly as Python does.
SUBMITTED_AT = {
    "no submitted_at": None,
    "submitted before the request": math.nextafter(REQUESTED_AT, -math.inf),
    "submitted as requested": REQUESTED_AT,
    "submitted after the request": math.nextafter(REQUESTED_AT, math.inf),
}
# A verdict this guess already got (it is redelivered), unlike what the record would give it now.
EARLIER_VERDICT = seen_text(Judgement(Verdict.INVALID_CODE, attempts_left=7))


@pytest.fixture
def client():
    return fakeredis.FakeRedis()


@pytest.fixture
def store(client):
    prefix = f"test-judge-script-{uuid.uuid4().hex}"
    yield RedisPendingCodes(client, prefix)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


def records():
    """Every kind of record a guess can meet, as the hash's fields (None: no record)."""
    yield "no record", None
    for state, attempts, with_link in itertools.product(
        ("live", "consumed", "voided", "burned"), range(MAX_ATTEMPTS + 2), (True, False)
    ):
        pending = PendingCode(
            SLOT,
            "u1",
            CODE_DIGEST if state in ("live", "consumed") else "",
            attempts,
            "m1",
            REQUESTED_AT,
            True,
            link_digest=LINK_DIGEST if with_link else "",
            sequence=1732790000123456,
            voided=state == "voided",
        )
        fields = fields_of(pending)
        if state == "consumed":
            fields["consumed_by"] = "an-earlier-guess"
        yield f"{state}, {attempts} attempts, {'a' if with_link else 'no'} link", fields


def fields_of(pending):
    """The hash's fields as ``start_issue`` stores them (redis-py sends each value as text)."""
    return {name: str(value) for name, value in _fields(pending).items()}


def by_the_spec(fields, presented, submitted_at):
    """The verdict ``judge_attempt`` gives, and the record as the guess leaves it."""
    if fields is not None and SEEN_FIELD in fields:
        return from_seen(fields[SEEN_FIELD]), fields
    pending = _parse({name.encode(): value.encode() for name, value in (fields or {}).items()})
    judgement = judge_attempt(pending, presented, MAX_ATTEMPTS, submitted_at)
    if pending is None or judgement.verdict is Verdict.CODE_EXPIRED:
        return judgement, fields
    after = {**fields, SEEN_FIELD: seen_text(judgement)}
    if judgement.verdict is Verdict.VERIFIED:
        after["consumed_by"] = ATTEMPT_ID
    elif judgement.verdict is Verdict.INVALID_CODE:
        after["attempts"] = str(pending.attempts + 1)
    else:  # too many: the code is burned
        after.update(attempts=str(MAX_ATTEMPTS), code_digest="")
    return judgement, after


def from_seen(text):
    verdict, attempts_left, user_id, sequence = json.loads(text)
    return Judgement(
        Verdict(verdict),
        attempts_left,
        None if user_id is False else user_id,
        None if sequence is False else int(sequence),
    )


def stored(store, fields):
    key = store._slot_key("pending", SLOT)
    store._redis.delete(key)
    if fields is not None:
        store._redis.hset(key, mapping=fields)


def record(store):
    raw = store._redis.hgetall(store._slot_key("pending", SLOT))
    return {name.decode(): value.decode() for name, value in raw.items()} or None


def test_the_script_judges_every_record_as_judge_attempt_does(store):
    disagreements = []
    cases = 0
    for (record_name, fields), (proof_name, presented), (time_name, submitted_at), redelivered in itertools.product(
        records(), PRESENTED.items(), SUBMITTED_AT.items(), (False, True)
    ):
        if redelivered and fields is None:
            continue
        if redelivered:
            fields = {**fields, SEEN_FIELD: EARLIER_VERDICT}
        case = f"{record_name}; {proof_name}; {time_name}; {'redelivered' if redelivered else 'first delivery'}"
        expected, expected_after = by_the_spec(fields, presented, submitted_at)
        stored(store, fields)
        cases += 1
        judgement = store.attempt(SLOT, presented, ATTEMPT_ID, MAX_ATTEMPTS, submitted_at)
        after = record(store)
        if (judgement, after) != (expected, expected_after):
            disagreements.append(f"{case}: {judgement}, {after}; the spec: {expected}, {expected_after}")
            continue
        # Delivered again: the same verdict, and nothing more spent.
        again = store.attempt(SLOT, presented, ATTEMPT_ID, MAX_ATTEMPTS, submitted_at)
        if (again, record(store)) != (judgement, after):
            disagreements.append(f"{case}, delivered again: {again}, {record(store)}; first {judgement}, {after}")
    # Each guess (every proof at every time) on 4 states x the attempts x with or without a link, delivered
    # once or again; and on no record.
    guesses = len(PRESENTED) * len(SUBMITTED_AT)
    assert cases == 4 * (MAX_ATTEMPTS + 2) * 2 * guesses * 2 + guesses
    assert not disagreements, "\n".join(disagreements[:20])


AWKWARD_TIMES = [
    0.1,
    1 / 3,
    0.30000000000000004,
    1732790000.1234567,
    REQUESTED_AT,
    2.0**53 + 2,
    1e22,
    1e23,  # the nearest double is not the one a naive decimal parser finds
    5e-324,  # the smallest subnormal
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -0.0,
]


def test_the_scripts_times_are_the_doubles_python_wrote(store):
    for value in AWKWARD_TIMES:
        # Lua's tonumber on repr's text, printed back with all 17 digits, is the same double.
        printed = store._redis.eval("return string.format('%.17g', tonumber(ARGV[1]))", 0, repr(value))
        assert float(printed) == value, (value, printed)


def test_the_script_compares_awkward_times_as_python_does(store):
    presented = PRESENTED["wrong code"]
    # A message's submitted_at may even be one of JSON's non-finite numbers: compared as Python does too.
    odd_submissions = [math.inf, -math.inf, math.nan]
    for requested_at in AWKWARD_TIMES:
        pending = PendingCode(SLOT, "u1", CODE_DIGEST, 0, "m1", requested_at, True)
        around = [math.nextafter(requested_at, -math.inf), requested_at, math.nextafter(requested_at, math.inf)]
        for submitted_at in around + odd_submissions:
            stored(store, fields_of(pending))
            expected = judge_attempt(pending, presented, MAX_ATTEMPTS, submitted_at)
            judgement = store.attempt(SLOT, presented, ATTEMPT_ID, MAX_ATTEMPTS, submitted_at)
            assert judgement == expected, (requested_at, submitted_at)


@pytest.mark.parametrize("user_id", ['a "quoted" id', "back\\slash", "new\nline\ttab\x01\x7f", "é ✓ 𝄞", ""])
def test_the_script_returns_and_remembers_any_user_id(store, user_id):
    pending = PendingCode(SLOT, user_id, CODE_DIGEST, 0, "m1", REQUESTED_AT, True, sequence=42)
    stored(store, fields_of(pending))
    judgement = store.attempt(SLOT, PRESENTED["right code"], ATTEMPT_ID, MAX_ATTEMPTS)
    assert judgement == Judgement(Verdict.VERIFIED, user_id=user_id, sequence=42)
    assert json.loads(record(store)[SEEN_FIELD]) == json.loads(seen_text(judgement))


def test_a_slot_without_a_live_code_answers_decoys_counting_down_as_judge_attempt_does(store):
    rules = GuessRules(decoys=True, ttl_seconds=600)
    wrong_code = PRESENTED["wrong code"]
    consumed = {**fields_of(PendingCode(SLOT, "u1", CODE_DIGEST, 0, "m1", REQUESTED_AT, True)), "consumed_by": "g"}
    for fields in (None, consumed):
        stored(store, fields)
        for tries in range(MAX_ATTEMPTS + 1):
            pending = _parse({name.encode(): value.encode() for name, value in (fields or {}).items()})
            expected = judge_attempt(pending, wrong_code, MAX_ATTEMPTS, decoy_attempts=tries)
            assert store.attempt(SLOT, wrong_code, f"decoy-{tries}", MAX_ATTEMPTS, rules=rules) == expected
            # Delivered again: the same verdict, nothing more counted.
            assert store.attempt(SLOT, wrong_code, f"decoy-{tries}", MAX_ATTEMPTS, rules=rules) == expected
        assert [judge_attempt(None, wrong_code, MAX_ATTEMPTS, decoy_attempts=n).verdict for n in range(3)] == [
            Verdict.INVALID_CODE,
            Verdict.INVALID_CODE,
            Verdict.TOO_MANY_ATTEMPTS,
        ]
        assert 0 < store._redis.ttl(store._slot_key("pending", SLOT)) <= 600
    # A link is no guess at a code: still expired. Without decoys (the registration's confirm): expired.
    stored(store, None)
    assert store.attempt(SLOT, PRESENTED["wrong link"], "a-link", MAX_ATTEMPTS, rules=rules).verdict is (
        Verdict.CODE_EXPIRED
    )
    assert store.attempt(SLOT, wrong_code, "no-decoys", MAX_ATTEMPTS).verdict is Verdict.CODE_EXPIRED
    # A code stored since replaces the decoy's count.
    store.start_issue(
        PendingCode(SLOT, "u1", CODE_DIGEST, 0, "m9", REQUESTED_AT, False, sequence=9),
        "m9",
        ttl_seconds=600,
        now=REQUESTED_AT,
        per_hour=100,
        per_day=100,
        hold_seconds=1,
        wait_seconds=0,
    )
    assert store.attempt(SLOT, wrong_code, "after", MAX_ATTEMPTS, rules=rules).attempts_left == MAX_ATTEMPTS - 1


def test_the_accounts_guess_budget_spans_its_slots_and_refuses_every_code_once_spent(store):
    allowed, now = 4, 1_000_000.0
    slots = [SLOT, Slot(Purpose.RESET_PASSWORD, "a@example.com"), Slot(Purpose.SIGN_IN, "a@example.com")]
    for slot in slots:
        stored_slot = {**fields_of(PendingCode(slot, "u1", code_digest(KEY, slot, "123456"), 0, "m", 1.0, True))}
        store._redis.hset(store._slot_key("pending", slot), mapping=stored_slot)
    rules = GuessRules(budget=allowed, now=now)
    verdicts = []
    for n, slot in enumerate([slots[0], slots[0], slots[1], slots[1], slots[2]]):
        wrong_code = Presented.code(KEY, slot, "000000")
        spec = judge_attempt(
            _parse({k.encode(): v.encode() for k, v in record_of(store, slot).items()}),
            wrong_code,
            MAX_ATTEMPTS,
            budget=GuessBudget(store.guesses_spent("u1", now), allowed),
        )
        judgement = store.attempt(slot, wrong_code, f"guess-{n}", MAX_ATTEMPTS, rules=rules)
        assert judgement == spec
        verdicts.append(judgement.verdict)
    assert verdicts == [Verdict.INVALID_CODE] * 4 + [Verdict.TOO_MANY_ATTEMPTS]
    assert store.guesses_spent("u1", now) == allowed
    right = Presented.code(KEY, slots[2], "123456")
    # Spent: the right code too is refused, and nothing of it is spent...
    assert store.attempt(slots[2], right, "right", MAX_ATTEMPTS, rules=rules).verdict is Verdict.TOO_MANY_ATTEMPTS
    assert record_of(store, slots[2])["attempts"] == "0" and record_of(store, slots[2])["code_digest"]
    # ...but from a device the account signed in from, it works; and a day later, for anyone.
    proven = GuessRules(budget=allowed, now=now, proven_device=True)
    assert store.attempt(slots[2], right, "proven", MAX_ATTEMPTS, rules=proven).verdict is Verdict.VERIFIED
    later = GuessRules(budget=allowed, now=now + 86401)
    right_reset = Presented.code(KEY, slots[1], "123456")
    assert store.attempt(slots[1], right_reset, "tomorrow", MAX_ATTEMPTS, rules=later).verdict is Verdict.VERIFIED
    assert store.guesses_spent("u2", now) == 0  # another account's budget is its own


def record_of(store, slot):
    raw = store._redis.hgetall(store._slot_key("pending", slot))
    return {name.decode(): value.decode() for name, value in raw.items()}


@pytest.mark.parametrize(
    ("earlier", "judgement"),
    [
        ({"verdict": "invalid_code", "attempts_left": 2, "user_id": None}, Judgement(Verdict.INVALID_CODE, 2)),
        (
            {"verdict": "verified", "attempts_left": 0, "user_id": "u1", "sequence": 1732790000123456},
            Judgement(Verdict.VERIFIED, 0, "u1", 1732790000123456),
        ),
    ],
)
def test_a_verdict_stored_as_a_json_object_by_an_earlier_worker_is_returned_to_its_redelivery(
    store, earlier, judgement
):
    """Workers before the scripts answered with arrays wrote a guess's verdict as a JSON object: a guess
    redelivered across the upgrade gets that verdict back, and spends nothing."""
    pending = PendingCode(SLOT, "u1", CODE_DIGEST, 0, "m1", REQUESTED_AT, True, sequence=1)
    stored(store, {**fields_of(pending), SEEN_FIELD: json.dumps(earlier)})
    before = record(store)
    assert store.attempt(SLOT, PRESENTED["right code"], ATTEMPT_ID, MAX_ATTEMPTS) == judgement
    assert record(store) == before
