"""How a request link reads the broker's confirms of its publishes (auth_service/adapters/request_links.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pika.spec

from auth_service.adapters.request_links import PublisherConfirms


class Channel:
    """The two hooks PublisherConfirms sets on a pika BlockingChannel, kept so the test can call them."""

    def __init__(self):
        self.on_confirm = None
        self.on_return = None
        self._impl = SimpleNamespace(confirm_delivery=self._confirm_delivery)

    def _confirm_delivery(self, ack_nack_callback):
        self.on_confirm = ack_nack_callback

    def add_on_return_callback(self, callback):
        self.on_return = callback

    def ack(self, tag: int, multiple: bool = False) -> None:
        self.on_confirm(SimpleNamespace(method=pika.spec.Basic.Ack(delivery_tag=tag, multiple=multiple)))

    def nack(self, tag: int, multiple: bool = False) -> None:
        self.on_confirm(SimpleNamespace(method=pika.spec.Basic.Nack(delivery_tag=tag, multiple=multiple)))


def test_a_publish_is_confirmed_by_its_own_ack_or_by_a_later_multiple_one():
    channel = Channel()
    confirms = PublisherConfirms(channel)
    first, second, third = confirms.next_publish(), confirms.next_publish(), confirms.next_publish()
    assert (first, second, third) == (1, 2, 3)
    assert not confirms.confirmed(first)
    channel.ack(first)
    assert confirms.confirmed(first) and not confirms.confirmed(second)
    channel.ack(third, multiple=True)
    assert confirms.confirmed(second) and confirms.confirmed(third)
    assert not any(confirms.refused(tag) for tag in (first, second, third))


def test_a_nacked_or_returned_publish_is_refused_and_never_confirmed():
    channel = Channel()
    confirms = PublisherConfirms(channel)
    nacked = confirms.next_publish()
    channel.nack(nacked)
    assert confirms.refused(nacked) and not confirms.confirmed(nacked)
    returned = confirms.next_publish()
    channel.on_return(channel, None, None, b"")  # unroutable: returned, then acked
    channel.ack(returned)
    assert confirms.refused(returned) and not confirms.confirmed(returned)
    both = [confirms.next_publish(), confirms.next_publish()]
    channel.nack(both[1], multiple=True)
    assert all(confirms.refused(tag) for tag in both)
