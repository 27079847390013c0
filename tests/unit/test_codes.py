"""The pure rules of verification codes."""

import re
import secrets
from collections import Counter

import pytest

from email_service.domain.codes import (
    PendingCode,
    Presented,
    Purpose,
    Slot,
    Verdict,
    code_digest,
    code_for_request,
    judge_attempt,
    link_digest,
    link_token_for_request,
)

KEY = "k" * 32
SLOT = Slot(Purpose.VERIFY_EMAIL, "a@example.com")


def pending(code="123456", attempts=0, **changes):
    fields = dict(
        slot=SLOT,
        user_id="u1",
        code_digest=code_digest(KEY, SLOT, code),
        attempts=attempts,
        message_id="m1",
        requested_at=0.0,
        mail_sent=True,
    )
    fields.update(changes)
    return PendingCode(**fields)


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


def test_digest_depends_on_key_purpose_address_and_code():
    base = code_digest(KEY, SLOT, "123456")
    assert base != code_digest("j" * 32, SLOT, "123456")
    assert base != code_digest(KEY, Slot(Purpose.VERIFY_EMAIL, "b@example.com"), "123456")
    assert base != code_digest(KEY, SLOT, "123457")
    for purpose in set(Purpose) - {SLOT.purpose}:
        assert base != code_digest(KEY, Slot(purpose, SLOT.email), "123456")
    assert base != link_digest(KEY, SLOT, "123456")
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
    judgement = judge_attempt(registration, Presented.code(KEY, SLOT, presented), max_attempts=5)
    assert judgement.verdict is verdict
    assert judgement.attempts_left == left


def test_a_code_of_one_purpose_is_worthless_for_another():
    for purpose in set(Purpose) - {SLOT.purpose}:
        presented = Presented.code(KEY, Slot(purpose, SLOT.email), "123456")
        judgement = judge_attempt(pending(), presented, max_attempts=5)
        assert judgement.verdict is Verdict.INVALID_CODE


def test_the_link_token_is_stable_per_request_and_is_not_the_code():
    token = link_token_for_request(KEY, "m1")
    assert token == link_token_for_request(KEY, "m1") != link_token_for_request(KEY, "m2")
    assert len(token) >= 43 and code_for_request(KEY, "m1") not in token
    assert token != link_token_for_request("j" * 32, "m1")


def test_the_link_confirms_like_the_code_and_a_stale_link_spends_nothing():
    token = link_token_for_request(KEY, "m1")
    with_link = pending(link_digest=link_digest(KEY, SLOT, token))
    assert judge_attempt(with_link, Presented.link(KEY, SLOT, token), 5).verdict is Verdict.VERIFIED
    stale = judge_attempt(with_link, Presented.link(KEY, SLOT, link_token_for_request(KEY, "m0")), 5)
    assert stale.verdict is Verdict.CODE_EXPIRED
    assert judge_attempt(pending(), Presented.link(KEY, SLOT, token), 5).verdict is Verdict.CODE_EXPIRED
    other_purpose = Presented.link(KEY, Slot(Purpose.RESET_PASSWORD, SLOT.email), token)
    assert judge_attempt(with_link, other_purpose, 5).verdict is Verdict.CODE_EXPIRED
    assert judge_attempt(with_link, Presented.code(KEY, SLOT, token), 5).verdict is Verdict.INVALID_CODE


def test_without_a_configured_key_workers_share_a_random_one_kept_in_redis():
    import fakeredis

    from email_service.adapters.code_key import SharedCodeKey

    client = fakeredis.FakeRedis()
    first, second = SharedCodeKey(client, "w"), SharedCodeKey(client, "w")
    key = first()
    assert len(key) == 64 and key == second() == first()
    client.flushall()  # Redis restarted: pending codes are gone, and so is the key
    assert first() == second() != key
