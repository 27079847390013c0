"""The pure rules of verification codes."""

import re
import secrets
from collections import Counter

import pytest

from email_service.domain.codes import (
    PendingRegistration,
    Verdict,
    code_digest,
    code_for_request,
    describe_validity,
    judge_attempt,
    within_quota,
)

KEY = "k" * 32


def pending(code="123456", attempts=0, **changes):
    fields = dict(
        email="a@example.com",
        user_id="u1",
        code_digest=code_digest(KEY, "a@example.com", code),
        attempts=attempts,
        message_id="m1",
        requested_at=0.0,
        mail_sent=True,
    )
    fields.update(changes)
    return PendingRegistration(**fields)


def test_codes_are_six_digits_spread_over_the_whole_range():
    codes = [code_for_request(KEY, secrets.token_hex(16)) for _ in range(20_000)]
    assert all(re.fullmatch(r"\d{6}", code) for code in codes)
    assert len(set(codes)) > 19_000
    first_digits = Counter(code[0] for code in codes)
    assert set(first_digits) == set("0123456789")
    assert all(1600 < count < 2400 for count in first_digits.values())


def test_a_request_always_gets_the_same_code_and_the_key_matters():
    ids = [f"m{n}" for n in range(50)]
    assert [code_for_request(KEY, i) for i in ids] == [code_for_request(KEY, i) for i in ids]
    assert sum(code_for_request(KEY, i) != code_for_request("j" * 32, i) for i in ids) >= 49


def test_digest_depends_on_key_address_and_code():
    base = code_digest(KEY, "a@example.com", "123456")
    assert base != code_digest("j" * 32, "a@example.com", "123456")
    assert base != code_digest(KEY, "b@example.com", "123456")
    assert base != code_digest(KEY, "a@example.com", "123457")
    assert "123456" not in base


@pytest.mark.parametrize(
    ("registration", "presented", "verdict", "left"),
    [
        (None, "123456", Verdict.CODE_EXPIRED, 0),
        (pending(), "123456", Verdict.VERIFIED, 0),
        (pending(), "654321", Verdict.INVALID_CODE, 4),
        (pending(attempts=3), "654321", Verdict.INVALID_CODE, 1),
        (pending(attempts=4), "654321", Verdict.TOO_MANY_ATTEMPTS, 0),
        (pending(attempts=5), "123456", Verdict.TOO_MANY_ATTEMPTS, 0),
        (pending(code_digest=""), "123456", Verdict.TOO_MANY_ATTEMPTS, 0),
        (pending(consumed_by="other"), "123456", Verdict.CODE_EXPIRED, 0),
    ],
)
def test_judge_attempt(registration, presented, verdict, left):
    judgement = judge_attempt(registration, code_digest(KEY, "a@example.com", presented), max_attempts=5)
    assert judgement.verdict is verdict
    assert judgement.attempts_left == left


def test_quota_boundaries():
    assert within_quota(4, 9, per_hour=5, per_day=10)
    assert not within_quota(5, 5, per_hour=5, per_day=10)
    assert not within_quota(0, 10, per_hour=5, per_day=10)


@pytest.mark.parametrize(("seconds", "text"), [(600, "10 minutes"), (60, "1 minute"), (90, "90 seconds")])
def test_describe_validity(seconds, text):
    assert describe_validity(seconds) == text


def test_without_a_configured_key_workers_share_a_random_one_kept_in_redis():
    import fakeredis

    from email_service.adapters.code_key import SharedCodeKey

    client = fakeredis.FakeRedis()
    first, second = SharedCodeKey(client, "w"), SharedCodeKey(client, "w")
    key = first()
    assert len(key) == 64 and key == second() == first()
    client.flushall()  # Redis restarted: pending codes are gone, and so is the key
    assert first() == second() != key
