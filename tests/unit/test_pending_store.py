"""Pending registrations in Redis (fakeredis here; the same adapter runs on real Redis)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import fakeredis
import pytest

from email_service.adapters.pending_store import RedisPendingCodes
from email_service.domain.codes import PendingCode, Presented, Purpose, Slot, Verdict, code_digest
from email_service.ports import IssueStart

KEY = "k" * 32
EMAIL = "a@example.com"
SLOT = Slot(Purpose.VERIFY_EMAIL, EMAIL)
RESET = Slot(Purpose.RESET_PASSWORD, EMAIL)


@pytest.fixture
def store():
    return RedisPendingCodes(fakeredis.FakeRedis(), "test")


def start(store, pending, now=1000.0, per_hour=100, per_day=100, holder=None, hold_seconds=5.0, wait_seconds=0.0):
    return store.start_issue(
        pending,
        holder or pending.message_id,
        ttl_seconds=600,
        now=now,
        per_hour=per_hour,
        per_day=per_day,
        hold_seconds=hold_seconds,
        wait_seconds=wait_seconds,
    )


def put(store, code="123456", message_id="m1", ttl=600, slot=SLOT, sequence=1):
    """Store a request's code as issuing does; True if it is now the slot's code (the lock is freed again)."""
    pending = PendingCode(slot, "u1", code_digest(KEY, slot, code), 0, message_id, 1.0, False, sequence=sequence)
    started = store.start_issue(
        pending, message_id, ttl_seconds=ttl, now=1000.0, per_hour=100, per_day=100, hold_seconds=5, wait_seconds=5
    )
    store.finish_issue(slot, message_id, message_id, sent=False)
    return started is IssueStart.STORED


def guess(store, code, attempt_id, max_attempts=5, slot=SLOT):
    return store.attempt(slot, Presented.code(KEY, slot, code), attempt_id, max_attempts)


def test_the_stored_registration_holds_no_code_and_expires(store):
    put(store, ttl=600)
    key = store._slot_key("pending", SLOT)
    raw = store._redis.hgetall(key)
    assert b"123456" not in b"".join(list(raw.keys()) + list(raw.values()))
    assert 0 < store._redis.ttl(key) <= 600
    assert EMAIL.encode() not in key.encode()


def test_twenty_parallel_wrong_guesses_spend_exactly_the_allowed_attempts(store):
    put(store)
    barrier = threading.Barrier(20)

    def one(index):
        barrier.wait()
        return guess(store, "000000", f"attempt-{index}").verdict

    with ThreadPoolExecutor(20) as pool:
        verdicts = list(pool.map(one, range(20)))
    assert verdicts.count(Verdict.INVALID_CODE) == 4
    assert verdicts.count(Verdict.TOO_MANY_ATTEMPTS) == 16
    assert guess(store, "123456", "late-right-guess").verdict is Verdict.TOO_MANY_ATTEMPTS


def test_a_redelivered_guess_gets_the_same_verdict_without_spending_an_attempt(store):
    put(store)
    first = guess(store, "000000", "same-message")
    again = guess(store, "000000", "same-message")
    assert first == again
    assert first.attempts_left == 4
    assert guess(store, "000000", "next-message").attempts_left == 3


def test_a_code_is_accepted_once(store):
    put(store)
    assert guess(store, "123456", "first").verdict is Verdict.VERIFIED
    assert guess(store, "123456", "first").verdict is Verdict.VERIFIED  # the same submission, redelivered
    assert guess(store, "123456", "second").verdict is Verdict.CODE_EXPIRED
    store.discard_consumed(SLOT, "first")
    assert store.get(SLOT) is None


def test_discard_leaves_a_registration_consumed_by_another_submission(store):
    put(store)
    guess(store, "123456", "first")
    store.discard_consumed(SLOT, "someone-else")
    assert store.get(SLOT) is not None


def test_a_new_code_replaces_the_old_one_and_resets_attempts(store):
    put(store, code="111111", message_id="m1", sequence=1)
    guess(store, "000000", "a1")
    assert put(store, code="222222", message_id="m2", sequence=2)
    assert guess(store, "111111", "a2").attempts_left == 4
    judgement = guess(store, "222222", "a3")
    assert (judgement.verdict, judgement.sequence) == (Verdict.VERIFIED, 2)


def test_only_a_newer_request_replaces_the_stored_code(store):
    assert put(store, code="222222", message_id="newer", sequence=2)
    assert not put(store, code="111111", message_id="older", sequence=1)
    assert put(store, code="222222", message_id="newer", sequence=2)  # the same request again
    assert put(store, code="333333", message_id="as new", sequence=2)  # as new as it: the later wins
    assert guess(store, "333333", "a1").verdict is Verdict.VERIFIED


def test_parallel_replacements_leave_the_newest_whatever_their_order(store):
    sequences = list(range(1, 21))
    barrier = threading.Barrier(len(sequences))

    def replace(sequence):
        barrier.wait()
        put(store, code=f"{sequence:06d}", message_id=f"m{sequence}", sequence=sequence)

    with ThreadPoolExecutor(len(sequences)) as pool:
        list(pool.map(replace, reversed(sequences)))
    assert store.get(SLOT).sequence == 20
    assert guess(store, "000020", "a1").verdict is Verdict.VERIFIED


def test_a_registration_over_the_quota_voids_the_code_and_stores_none(store):
    put(store, code="111111", message_id="m1", sequence=1)
    over = PendingCode(SLOT, "u1", code_digest(KEY, SLOT, "222222"), 0, "m2", 2.0, False, sequence=2)
    assert start(store, over, per_hour=1) is IssueStart.OVER_QUOTA
    assert store.get(SLOT).voided and store.get(SLOT).code_digest == ""
    assert guess(store, "111111", "a1").verdict is Verdict.CODE_EXPIRED
    assert guess(store, "222222", "a2").verdict is Verdict.CODE_EXPIRED


def test_a_reset_or_sign_in_request_over_the_quota_stores_nothing_and_leaves_the_live_code(store):
    for slot in (RESET, Slot(Purpose.SIGN_IN, EMAIL)):
        put(store, code="111111", message_id=f"m1-{slot.purpose}", slot=slot, sequence=1)
        over = PendingCode(
            slot, "u1", code_digest(KEY, slot, "222222"), 0, f"m2-{slot.purpose}", 2.0, False, sequence=2
        )
        assert start(store, over, per_hour=1) is IssueStart.OVER_QUOTA
        assert store.get(slot).message_id == f"m1-{slot.purpose}" and not store.get(slot).voided
        assert guess(store, "222222", "a1", slot=slot).verdict is Verdict.INVALID_CODE
        assert guess(store, "111111", "a2", slot=slot).verdict is Verdict.VERIFIED


def test_the_mailing_lock_has_one_holder_and_frees_itself(store):
    def pending(message_id, sequence, slot=SLOT):
        return PendingCode(slot, "u1", "c" * 64, 0, message_id, 1.0, False, sequence=sequence)

    assert start(store, pending("first", 1), hold_seconds=0.3) is IssueStart.STORED
    assert start(store, pending("first", 1), hold_seconds=0.3) is IssueStart.STORED  # its holder again
    assert start(store, pending("second", 2), hold_seconds=0.3, wait_seconds=0.05) is IssueStart.LOCKED
    store.finish_issue(SLOT, "second", "second", sent=True)  # not the holder: nothing happens
    assert start(store, pending("second", 2), hold_seconds=0.3) is IssueStart.LOCKED
    assert store.get(SLOT).message_id == "first"
    assert start(store, pending("second", 2), hold_seconds=0.3, wait_seconds=1.0) is IssueStart.STORED  # ran out
    store.finish_issue(SLOT, "second", "second", sent=False)
    assert start(store, pending("third", 3), hold_seconds=0.3) is IssueStart.STORED
    assert start(store, pending("x", 1, slot=RESET), hold_seconds=0.3) is IssueStart.STORED  # another slot's lock


def test_a_finished_mail_is_recorded_only_for_the_current_request_and_a_redelivery_is_not_mailed_again(store):
    put(store, message_id="m1")
    store.finish_issue(SLOT, "older", "older", sent=True)
    assert store.get(SLOT).mail_sent is False
    first = PendingCode(SLOT, "u1", "c" * 64, 0, "m1", 1.0, False, sequence=1)
    assert start(store, first) is IssueStart.STORED
    store.finish_issue(SLOT, "m1", "m1", sent=True)
    assert store.get(SLOT).mail_sent is True
    assert start(store, first) is IssueStart.SENT
    older = PendingCode(SLOT, "u1", "d" * 64, 0, "m0", 1.0, False, sequence=0)
    assert start(store, older) is IssueStart.OUTDATED


def test_the_code_quota_counts_each_request_once_per_window(store):
    def reserve(message_id, now):
        pending = PendingCode(SLOT, "u1", "c" * 64, 0, message_id, now, False, sequence=int(now))
        started = start(store, pending, now=now, per_hour=2, per_day=3)
        store.finish_issue(SLOT, message_id, message_id, sent=False)
        return started is IssueStart.STORED

    assert reserve("m1", 1000.0) and reserve("m1", 1001.0)  # a redelivery is not counted twice
    assert reserve("m2", 1500.0)
    assert not reserve("m3", 1600.0)  # two in the last hour
    assert reserve("m3", 1000.0 + 3601)  # m1 has left the hour
    assert not reserve("m4", 1000.0 + 3700)  # m2 and m3 in the hour
    assert not reserve("m5", 2000.0 + 3 * 3600)  # three in the day
    assert reserve("m1", 2000.0 + 3 * 3600)  # already counted


def test_parallel_requests_cannot_both_take_the_last_code_slot(store):
    barrier = threading.Barrier(10)

    def one(index):
        barrier.wait()
        # Equal sequence numbers: none is older than another, so each is judged by the quota alone.
        pending = PendingCode(SLOT, "u1", "c" * 64, 0, f"m{index}", 1.0, False, sequence=1)
        started = start(store, pending, per_hour=3, wait_seconds=10)
        store.finish_issue(SLOT, f"m{index}", f"m{index}", sent=False)
        return started

    with ThreadPoolExecutor(10) as pool:
        started = list(pool.map(one, range(10)))
    assert started.count(IssueStart.STORED) == 3 and started.count(IssueStart.OVER_QUOTA) == 7


def test_codes_of_two_purposes_for_one_address_live_side_by_side(store):
    put(store, code="111111", message_id="registration")
    put(store, code="222222", message_id="reset", slot=RESET)
    assert store.get(SLOT).message_id == "registration" and store.get(RESET).message_id == "reset"
    assert guess(store, "222222", "a1").verdict is Verdict.INVALID_CODE  # the reset code, sent to confirm
    assert guess(store, "111111", "a2", slot=RESET).verdict is Verdict.INVALID_CODE
    assert guess(store, "222222", "a3", slot=RESET).verdict is Verdict.VERIFIED
    store.discard_consumed(RESET, "a3")
    assert store.get(RESET) is None
    assert guess(store, "111111", "a4").verdict is Verdict.VERIFIED


def test_each_purpose_has_its_own_code_quota(store):
    def request(slot, message_id, sequence):
        pending = PendingCode(slot, "u1", "c" * 64, 0, message_id, 1.0, False, sequence=sequence)
        started = start(store, pending, per_hour=1, per_day=1)
        store.finish_issue(slot, message_id, message_id, sent=False)
        return started

    assert request(SLOT, "m1", 1) is IssueStart.STORED
    assert request(SLOT, "m2", 2) is IssueStart.OVER_QUOTA
    assert request(RESET, "m3", 3) is IssueStart.STORED


def test_the_record_keeps_its_link_digest(store):
    start(store, PendingCode(SLOT, "u1", "c" * 64, 0, "m1", 1.0, False, link_digest="l" * 64))
    assert store.get(SLOT).link_digest == "l" * 64


def test_a_reply_of_an_asyncio_client_is_refused_not_used():
    from common.redis_replies import reply

    assert reply(3) == 3

    async def pending() -> int:
        return 3

    awaitable = pending()
    with pytest.raises(TypeError):
        reply(awaitable)
    awaitable.close()


def test_every_guess_is_one_round_trip(store):
    put(store)
    guess(store, "000000", "warm-up")  # a script's first run also loads it into Redis
    commands = []
    execute = store._redis.execute_command
    store._redis.execute_command = lambda *args, **options: commands.append(args[0]) or execute(*args, **options)
    assert guess(store, "000000", "wrong").attempts_left == 3
    assert guess(store, "000000", "wrong").attempts_left == 3  # redelivered
    assert guess(store, "123456", "right").verdict is Verdict.VERIFIED
    assert guess(store, "123456", "after").verdict is Verdict.CODE_EXPIRED
    assert commands == ["EVALSHA"] * 4


def test_two_processes_judge_one_record_alike_whichever_wrote_it_last():
    server = fakeredis.FakeServer()
    one, other = (RedisPendingCodes(fakeredis.FakeRedis(server=server), "test") for _ in range(2))
    put(one)
    assert guess(other, "000000", "g1").attempts_left == 4
    assert guess(one, "000000", "g2").attempts_left == 3
    assert guess(other, "000000", "g3").attempts_left == 2
    assert guess(one, "000000", "g2") == guess(other, "000000", "g2")  # redelivered: the same verdict
    assert put(other, code="654321", message_id="m2", sequence=2)
    assert guess(one, "123456", "old-code").verdict is Verdict.INVALID_CODE
    assert guess(one, "654321", "new-code").verdict is Verdict.VERIFIED
    assert put(other, code="111111", message_id="m3", sequence=3)
    assert guess(one, "111111", "newest-code").verdict is Verdict.VERIFIED


def mailed(store, message_id="m1", sent=True):
    """Issue a request's code as the handler does; the answer of ``start_issue``."""
    pending = PendingCode(SLOT, "u1", code_digest(KEY, SLOT, "123456"), 0, message_id, 1.0, False, sequence=1)
    started = start(store, pending)
    if started is IssueStart.STORED:
        store.finish_issue(SLOT, message_id, message_id, sent=sent)
    return started


def test_a_request_redelivered_after_its_code_was_spent_does_not_mail_it_again(store):
    # The worker mailed the code but lost the request before finishing: it is redelivered after the
    # code was verified and discarded.
    assert mailed(store, sent=False) is IssueStart.STORED
    assert guess(store, "123456", "first").verdict is Verdict.VERIFIED
    store.discard_consumed(SLOT, "first")
    assert mailed(store) is IssueStart.SENT
    assert store.get(SLOT) is None
    assert guess(store, "123456", "second").verdict is Verdict.CODE_EXPIRED
    assert mailed(store, message_id="m2") is IssueStart.STORED  # a new request still gets a new code


def test_a_request_whose_mail_failed_mails_its_code_on_retry(store):
    assert mailed(store, sent=False) is IssueStart.STORED
    assert mailed(store) is IssueStart.STORED
    assert mailed(store) is IssueStart.SENT  # once mailed, a redelivery is a redelivery
