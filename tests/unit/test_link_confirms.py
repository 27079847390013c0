"""``LinkConfirms``: the link thread's publishes in flight together, each future settled by its own confirm.

The frames are built as pika hands them to the channel's callbacks, in the order the broker sends them;
the same class on the real broker: tests/integration/test_link_publishes.py."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import pika.spec
import pytest

from auth_service.adapters.rabbitmq import LinkConfirms, RabbitMessageBus
from auth_service.ports import BrokerUnavailable
from common.messaging.topology import Topology


class ChannelUnderneath:
    """The part of pika's ``Channel`` (``BlockingChannel._impl``) that LinkConfirms uses."""

    def __init__(self):
        self.on_confirm = None
        self.on_return = None
        self.on_close = None

    def confirm_delivery(self, ack_nack_callback):
        self.on_confirm = ack_nack_callback

    def add_on_return_callback(self, callback):
        self.on_return = callback

    def add_on_close_callback(self, callback):
        self.on_close = callback


@pytest.fixture
def link():
    underneath = ChannelUnderneath()
    return LinkConfirms(SimpleNamespace(_impl=underneath)), underneath


def sent(confirms: LinkConfirms, *message_ids: str) -> list[Future]:
    futures = []
    for message_id in message_ids:
        done: Future = Future()
        done.set_running_or_notify_cancel()
        confirms.expect(message_id, done)
        futures.append(done)
    return futures


def ack(underneath: ChannelUnderneath, tag: int, multiple: bool = False) -> None:
    underneath.on_confirm(SimpleNamespace(method=pika.spec.Basic.Ack(delivery_tag=tag, multiple=multiple)))


def nack(underneath: ChannelUnderneath, tag: int, multiple: bool = False) -> None:
    underneath.on_confirm(SimpleNamespace(method=pika.spec.Basic.Nack(delivery_tag=tag, multiple=multiple)))


def returned(underneath: ChannelUnderneath, message_id: str) -> None:
    underneath.on_return(None, None, pika.BasicProperties(message_id=message_id), b"{}")


def test_each_publish_waits_for_its_own_confirm_whatever_came_before(link):
    confirms, underneath = link
    first, second, third = sent(confirms, "a", "b", "c")
    ack(underneath, 2)
    assert (first.done(), second.done(), third.done()) == (False, True, False)
    assert second.result() is None
    ack(underneath, 1)
    ack(underneath, 3)
    assert first.result() is None and third.result() is None


def test_a_multiple_ack_confirms_every_publish_up_to_its_tag(link):
    confirms, underneath = link
    futures = sent(confirms, "a", "b", "c", "d")
    ack(underneath, 3, multiple=True)
    assert [done.done() for done in futures] == [True, True, True, False]
    ack(underneath, 4, multiple=True)
    assert all(done.result() is None for done in futures)


def test_a_nack_refuses_the_publishes_it_names_only(link):
    confirms, underneath = link
    first, second, third = sent(confirms, "a", "b", "c")
    nack(underneath, 2, multiple=True)
    for done in (first, second):
        with pytest.raises(BrokerUnavailable, match="refused"):
            done.result()
    assert not third.done()


def test_a_returned_message_is_refused_when_its_ack_comes_and_the_others_are_not(link):
    confirms, underneath = link
    first, second = sent(confirms, "a", "b")
    returned(underneath, "b")  # the broker returns an unroutable message before its ack
    ack(underneath, 2, multiple=True)
    assert first.result() is None
    with pytest.raises(BrokerUnavailable, match="no queue"):
        second.result()
    # the next publish of the same message id is judged on its own
    [again] = sent(confirms, "b")
    ack(underneath, 3)
    assert again.result() is None


def test_a_lost_channel_fails_what_still_waits_and_later_confirms_change_nothing(link):
    confirms, underneath = link
    first, second = sent(confirms, "a", "b")
    ack(underneath, 1)
    confirms.fail_all(BrokerUnavailable("lost"))
    assert first.result() is None
    with pytest.raises(BrokerUnavailable, match="lost"):
        second.result()
    ack(underneath, 2)  # a frame read after the loss settles nothing twice


def test_a_publish_that_did_not_leave_is_withdrawn_and_the_next_takes_its_tag(link):
    confirms, underneath = link
    [first] = sent(confirms, "a")
    failed: Future = Future()
    tag = confirms.expect("b", failed)
    confirms.withdraw(tag)
    [third] = sent(confirms, "c")
    ack(underneath, 2)
    assert third.result() is None and not first.done() and not failed.done()


def test_a_channel_the_broker_closed_fails_what_still_waits(link):
    confirms, underneath = link
    [waiting] = sent(confirms, "a")
    underneath.on_close(None, "NOT_FOUND - no exchange")
    with pytest.raises(BrokerUnavailable, match="NOT_FOUND"):
        waiting.result()


def test_a_return_is_charged_to_the_oldest_publish_of_its_message_id_in_flight(link):
    """The relay's republish shares its message id with the request's publish, which may still be in flight."""
    confirms, underneath = link
    first, again = sent(confirms, "same", "same")
    returned(underneath, "same")  # the first copy's return, before its ack
    ack(underneath, 1)
    with pytest.raises(BrokerUnavailable, match="no queue"):
        first.result()
    ack(underneath, 2)
    assert again.result() is None


def test_a_withdrawn_publish_leaves_the_earlier_one_of_its_id_to_be_returned(link):
    confirms, underneath = link
    [first] = sent(confirms, "same")
    confirms.withdraw(confirms.expect("same", Future()))
    returned(underneath, "same")
    ack(underneath, 1)
    with pytest.raises(BrokerUnavailable, match="no queue"):
        first.result()


def test_a_returned_then_refused_publish_is_forgotten(link):
    confirms, underneath = link
    [first] = sent(confirms, "a")
    returned(underneath, "a")
    nack(underneath, 1)
    with pytest.raises(BrokerUnavailable, match="refused"):
        first.result()
    assert confirms._returned == set() and not confirms.waiting


class DrainingConnection:
    """An open connection whose next round of events brings the broker's ack of everything sent."""

    is_open = True

    def __init__(self, underneath: ChannelUnderneath, last_tag: int):
        self._underneath, self._last_tag = underneath, last_tag
        self.rounds = 0

    def process_data_events(self, time_limit: float) -> None:
        self.rounds += 1
        ack(self._underneath, self._last_tag, multiple=True)


def stopping_bus(confirms: LinkConfirms, connection) -> RabbitMessageBus:
    bus = RabbitMessageBus("amqp://guest:guest@127.0.0.1:1/%2F", Topology("a", "b", "c"), max_waiting_replies=1)
    bus._confirms, bus._connection = confirms, connection
    return bus


def test_on_a_stop_the_link_waits_for_the_confirms_of_what_it_sent(link):
    confirms, underneath = link
    futures = sent(confirms, "a", "b")
    connection = DrainingConnection(underneath, last_tag=2)
    bus = stopping_bus(confirms, connection)
    bus._stopping.set()
    bus.on_disconnected()
    assert [done.result() for done in futures] == [None, None] and connection.rounds == 1


def test_on_a_lost_connection_the_link_fails_what_it_sent_at_once(link):
    confirms, underneath = link
    [waiting] = sent(confirms, "a")
    connection = DrainingConnection(underneath, last_tag=1)
    connection.is_open = False
    bus = stopping_bus(confirms, connection)
    bus._stopping.set()
    bus.on_disconnected()
    assert connection.rounds == 0
    with pytest.raises(BrokerUnavailable, match="lost"):
        waiting.result()
