"""A 201 means the message will be published, even if the broker was away at the time."""

from datetime import UTC, datetime, timedelta

import pytest

from auth_service.ports import BrokerUnavailable
from auth_service.service_layer.outbox import OUTBOX_GRACE


def test_broker_down_at_registration_still_answers_201_and_keeps_the_message(system, unique_email):
    email = unique_email()
    system.broker.up = False
    response = system.client.post("/auth/register", json={"email": email, "password": "correct horse battery"})
    assert response.status_code == 201
    assert system.auth.users.pending_outbox_count() == 1
    assert system.outbox == []


def test_a_message_is_overdue_once_its_grace_period_is_over_until_the_relay_publishes_it(system, unique_email):
    users, now = system.auth.users, lambda: datetime.fromtimestamp(system.clock(), UTC)
    system.broker.up = False
    system.client.post("/auth/register", json={"email": unique_email(), "password": "correct horse battery"})
    assert (users.pending_outbox_count(), users.overdue_outbox_count(now())) == (1, 0)
    system.clock.advance(OUTBOX_GRACE.total_seconds() + 1)
    assert users.overdue_outbox_count(now()) == 1
    with pytest.raises(BrokerUnavailable):
        system.auth.outbox.relay_due()
    assert users.overdue_outbox_count(now()) == 1, "a refused relay leaves it overdue"
    system.broker.up = True
    system.auth.outbox.relay_due()
    assert (users.pending_outbox_count(), users.overdue_outbox_count(now())) == (0, 0)


def test_the_relay_publishes_what_was_left_once_the_broker_is_back(system, unique_email):
    email = unique_email()
    system.broker.up = False
    system.client.post("/auth/register", json={"email": email, "password": "correct horse battery"})

    system.broker.up = True
    assert system.auth.outbox.relay_due() == 0  # still inside the request's grace period
    system.clock.advance(OUTBOX_GRACE.total_seconds() + 1)
    assert system.auth.outbox.relay_due() == 2  # the code request and the user.registered event
    assert system.auth.outbox.relay_due() == 0
    assert len(system.codes_for(email)) == 1
    assert system.auth.users.pending_outbox_count() == 0


def test_a_relay_that_meets_a_dead_broker_puts_the_message_back(system, unique_email):
    email = unique_email()
    system.broker.up = False
    system.client.post("/auth/register", json={"email": email, "password": "correct horse battery"})
    system.clock.advance(OUTBOX_GRACE.total_seconds() + 1)
    with pytest.raises(BrokerUnavailable):
        system.auth.outbox.relay_due()
    system.broker.up = True
    system.clock.advance(timedelta(seconds=1).total_seconds())
    assert system.auth.outbox.relay_due() == 2
    assert len(system.codes_for(email)) == 1


def test_a_published_registration_leaves_nothing_in_the_outbox(system, unique_email):
    system.client.post("/auth/register", json={"email": unique_email(), "password": "correct horse battery"})
    assert system.auth.users.pending_outbox_count() == 0


def test_a_registrations_two_messages_leave_the_outbox_in_two_writes(system, unique_email):
    users = system.auth.users
    writes: list[str] = []
    collection = users._users

    class Counted:
        def __getattr__(self, name):
            if name in ("update_one", "find_one_and_update"):
                writes.append(name)
            return getattr(collection, name)

    users._users = Counted()
    try:
        body = {"email": unique_email(), "password": "correct horse battery"}
        response = system.client.post("/auth/register", json=body)
    finally:
        users._users = collection
    assert response.status_code == 201
    # Marking the code request, then the event (which also ends the relay's watch); nothing else updates.
    assert writes == ["update_one", "update_one"]
    assert users.pending_outbox_count() == 0
