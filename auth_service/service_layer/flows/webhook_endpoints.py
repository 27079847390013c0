"""What an operator does with webhooks (the admin API): endpoints, their secrets, their deliveries.

A URL is checked when the endpoint is added, as far as can be known then: its
scheme, and every address its host resolves to now (a name that does not
resolve yet is taken: it is checked again at every connection, where it
counts). A secret is shown once, in the answer that creates or rotates it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from auth_service.domain import webhooks as rules
from auth_service.domain.errors import FieldRefused, NotFound, ServiceUnavailable
from auth_service.domain.webhook_urls import RefusedAddress, parse_url
from auth_service.domain.webhooks import Delivery, DeliveryStatus, Endpoint, InvalidEndpoint, Secret
from auth_service.ports import AddressCheck, BrokerUnavailable, EventFeed, WebhookStore, WebhookTimers

log = logging.getLogger(__name__)

MAX_DELIVERIES_LISTED = 100


class WebhookEndpoints:
    def __init__(
        self,
        store: WebhookStore,
        timers: WebhookTimers,
        feed: EventFeed,
        check_address: AddressCheck,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._timers = timers
        self._feed = feed
        self._check_address = check_address
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def create(self, url: object, events: object, description: object = None) -> tuple[Endpoint, str]:
        """The new endpoint and its secret (shown this once). ``FieldRefused`` (422) for a URL, patterns or
        description refused."""
        try:
            target = parse_url(url)
            patterns = rules.valid_patterns(events)
            described = rules.valid_description(description)
        except InvalidEndpoint as refused:
            raise FieldRefused(refused.field, str(refused)) from None
        try:
            self._check_address(target.host, target.port)
        except RefusedAddress as refused:
            raise FieldRefused("url", f"is refused: {refused}") from None
        secret = rules.new_secret()
        endpoint = Endpoint(
            id=secrets.token_hex(12),
            url=str(url),
            events=patterns,
            secrets=(Secret(secret),),
            created_at=self._now(),
            description=described,
        )
        try:
            # Before the endpoint is stored: every event after the 201 reaches the dispatchers.
            self._feed.open()
        except BrokerUnavailable:
            raise ServiceUnavailable("The broker does not answer: no endpoint was added. Try again shortly.") from None
        self._store.add_endpoint(endpoint)
        log.info("webhook endpoint added", extra={"endpoint_id": endpoint.id, "events": list(patterns)})
        return endpoint, secret

    def endpoints(self) -> list[Endpoint]:
        return self._store.endpoints()

    def endpoint(self, endpoint_id: str) -> Endpoint:
        endpoint = self._store.endpoint(endpoint_id)
        if endpoint is None:
            raise NotFound("No webhook endpoint has this id.")
        return endpoint

    def delete(self, endpoint_id: str) -> None:
        if not self._store.remove_endpoint(endpoint_id):
            raise NotFound("No webhook endpoint has this id.")
        log.info("webhook endpoint removed", extra={"endpoint_id": endpoint_id})

    def rotate_secret(self, endpoint_id: str) -> str:
        """A new secret, which signs from now on; the previous one signs beside it for a day."""
        secret = rules.new_secret()
        rotated = self.endpoint(endpoint_id).rotated(secret, self._now())
        if not self._store.replace_secrets(rotated):
            raise NotFound("No webhook endpoint has this id.")
        log.info("webhook secret rotated", extra={"endpoint_id": endpoint_id})
        return secret

    def enable(self, endpoint_id: str) -> Endpoint:
        """Take a disabled endpoint back: deliveries start again with the next event (and failed ones by hand)."""
        if not self._store.enable(endpoint_id):
            raise NotFound("No webhook endpoint has this id.")
        log.info("webhook endpoint enabled", extra={"endpoint_id": endpoint_id})
        return self.endpoint(endpoint_id)

    def deliveries(self, endpoint_id: str, status: str | None = None) -> list[Delivery]:
        self.endpoint(endpoint_id)
        wanted = None
        if status is not None:
            try:
                wanted = DeliveryStatus(status)
            except ValueError:
                choices = ", ".join(status.value for status in DeliveryStatus)
                raise FieldRefused("status", f"must be one of {choices}") from None
        return self._store.deliveries(endpoint_id, wanted, MAX_DELIVERIES_LISTED)

    def retry(self, endpoint_id: str, delivery_id: str) -> None:
        """The delivery is attempted again at once (a failed one, or one the receiver lost); one due already
        is left as it is."""
        self.endpoint(endpoint_id)
        if not self._store.retry_by_hand(delivery_id, endpoint_id, self._now()):
            delivery = self._store.delivery(delivery_id)
            if delivery is None or delivery.endpoint_id != endpoint_id:
                raise NotFound("This endpoint has no delivery with this id.")
            return
        try:
            self._timers.due(delivery_id, endpoint_id, None, 0)
        except BrokerUnavailable:
            # Stored as due: the dispatchers' sweep takes it up without the message.
            log.warning("webhook retry stored; the broker did not take its message", extra={"delivery_id": delivery_id})
        log.info("webhook delivery retried by hand", extra={"delivery_id": delivery_id})
