"""The rules of ``start_issue.lua`` that exist nowhere else: the quota, and "the newer request wins".

They live in the script only (no Python copy to drift from it), so they are checked here as properties,
on fakeredis (Lua 5.1, as Redis runs it), over sequences of requests hypothesis draws.
"""

from __future__ import annotations

import fakeredis
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.adapters.pending_store import RedisPendingCodes
from email_service.domain.codes import PendingCode, Purpose, Slot
from email_service.ports import IssueStart

START = 1_700_000_000.0
HOUR, DAY = 3600, 86400


def fresh_store() -> RedisPendingCodes:
    """A Redis of its own for each example hypothesis draws."""
    return RedisPendingCodes(fakeredis.FakeRedis(server=fakeredis.FakeServer()), "test-issue-script")


def issue(
    store: RedisPendingCodes, slot: Slot, message_id: str, sequence: int, now: float, per_hour: int, per_day: int
):
    pending = PendingCode(slot, "u1", "digest-" + message_id, 0, message_id, now, False, sequence=sequence)
    started = store.start_issue(
        pending,
        message_id,
        ttl_seconds=DAY,
        now=now,
        per_hour=per_hour,
        per_day=per_day,
        hold_seconds=1,
        wait_seconds=0,
    )
    store.finish_issue(slot, message_id, message_id, sent=False)
    return started


def window(times: list[float], now: float, seconds: int) -> int:
    return sum(1 for t in times if now - seconds <= t <= now)


@settings(max_examples=60, deadline=None)
@given(
    purpose=st.sampled_from([Purpose.VERIFY_EMAIL, Purpose.RESET_PASSWORD, Purpose.SIGN_IN]),
    per_hour=st.integers(1, 4),
    per_day=st.integers(1, 8),
    # Gaps between requests, from a burst to more than a day.
    gaps=st.lists(st.sampled_from([0.0, 1.0, 600.0, 1800.0, 3599.0, 3600.0, 3601.0, 40_000.0, 86_401.0]), max_size=25),
)
def test_the_quota_mails_at_most_so_many_codes_an_hour_and_a_day_and_refuses_only_a_full_window(
    purpose, per_hour, per_day, gaps
):
    store = fresh_store()
    slot = Slot(purpose, "a@example.com")
    now, mailed, live = START, [], None
    for n, gap in enumerate(gaps):
        now += gap
        started = issue(store, slot, f"m{n}", n, now, per_hour, per_day)
        if started is IssueStart.STORED:
            mailed.append(now)
            live = f"m{n}"
            assert window(mailed, now, HOUR) <= per_hour and window(mailed, now, DAY) <= per_day
        else:
            assert started is IssueStart.OVER_QUOTA
            assert window(mailed, now, HOUR) >= per_hour or window(mailed, now, DAY) >= per_day
        stored = store.get(slot)
        assert stored is not None
        if started is IssueStart.OVER_QUOTA and purpose is Purpose.VERIFY_EMAIL:
            # Registering again voids the earlier codes even when the new one is over the quota.
            assert (stored.message_id, stored.voided, stored.code_digest) == (f"m{n}", True, "")
        else:
            # Another purpose's request over the quota leaves its owner's live code as it was.
            assert (stored.message_id, stored.voided) == (live, False)


@settings(max_examples=60, deadline=None)
@given(per_hour=st.integers(1, 3), redeliveries=st.integers(1, 4))
def test_a_redelivered_request_is_not_counted_again(per_hour, redeliveries):
    store = fresh_store()
    slot = Slot(Purpose.RESET_PASSWORD, "a@example.com")
    for _ in range(redeliveries):
        assert issue(store, slot, "m0", 0, START, per_hour, per_hour) is IssueStart.STORED
    for n in range(1, per_hour):
        assert issue(store, slot, f"m{n}", n, START, per_hour, per_hour) is IssueStart.STORED
    assert issue(store, slot, "one-more", per_hour, START, per_hour, per_hour) is IssueStart.OVER_QUOTA


@settings(max_examples=80, deadline=None)
@given(sequences=st.lists(st.integers(0, 6), min_size=1, max_size=20))
def test_the_newer_request_wins_and_an_older_one_never_replaces_it(sequences):
    store = fresh_store()
    slot = Slot(Purpose.VERIFY_EMAIL, "a@example.com")
    newest = None
    for n, sequence in enumerate(sequences):
        started = issue(store, slot, f"m{n}", sequence, START + n, 100, 100)
        if newest is not None and sequence < newest[0]:
            assert started is IssueStart.OUTDATED
        else:
            # As new as the stored one or newer (equal numbers: the later request wins).
            assert started is IssueStart.STORED
            newest = (sequence, f"m{n}")
        stored = store.get(slot)
        assert stored is not None and (stored.sequence, stored.message_id) == newest
