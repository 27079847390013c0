"""The webhook dispatcher's threads: the consumer of the webhooks queue, a lane per endpoint, a sweep.

The consumer stores each event's deliveries and acks it (auth_service/webhook_dispatch.py); the
attempts themselves run on lanes, each endpoint with threads of its own (up to
WEBHOOK_ENDPOINT_CONCURRENCY), so that a slow or dead endpoint holds back only its own
deliveries: the consumer never waits for a receiver. What a lane had in hand when its process
died is still due in MongoDB: the sweep hands such deliveries to the lanes again once their
lease is over, and scheduled retries whose timer message was lost.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from auth_service.ports import BrokerUnavailable, EventFeed
from auth_service.service_layer.flows.webhook_dispatch import WebhookDispatch
from common.messaging.consumer import ChannelPublisher, Result
from common.messaging.envelope import Incoming, MalformedMessage
from common.messaging.messages import ID_MAX_LENGTH, WebhookAttemptDue
from common.messaging.topology import EVENT_ROUTING_KEY
from common.periodic import Periodic

log = logging.getLogger(__name__)

LANE_IDLE_SECONDS = 30.0
SWEEP_SECONDS = 5.0
FEED_CHECK_SECONDS = 60.0


@dataclass
class _Lane:
    queued: deque[str] = field(default_factory=deque)
    waiting: set[str] = field(default_factory=set)
    threads: int = 0
    idle: int = 0


class Lanes:
    """Each endpoint's deliveries in a line of their own, worked by threads of their own.

    A lane starts a thread when it has work and fewer than ``per_endpoint`` threads, none of them
    idle; a thread with nothing to do for ``idle_seconds`` ends, so a quiet endpoint costs nothing.
    """

    name = "webhook-lanes"

    def __init__(self, attempt: Callable[[str], object], per_endpoint: int, idle_seconds: float = LANE_IDLE_SECONDS):
        self._attempt = attempt
        self._per_endpoint = per_endpoint
        self._idle_seconds = idle_seconds
        self._lanes: dict[str, _Lane] = {}
        self._changed = threading.Condition()
        self._stopping = False
        self._threads: set[threading.Thread] = set()
        self.failure: BaseException | None = None

    def start(self) -> None:
        """Threads start with work, not before."""

    def submit(self, endpoint_id: str, delivery_id: str) -> None:
        with self._changed:
            if self._stopping:
                return
            lane = self._lanes.setdefault(endpoint_id, _Lane())
            if delivery_id in lane.waiting:
                return
            lane.waiting.add(delivery_id)
            lane.queued.append(delivery_id)
            if lane.idle:
                self._changed.notify_all()
            elif lane.threads < self._per_endpoint:
                lane.threads += 1
                thread = threading.Thread(
                    target=self._work, args=(endpoint_id, lane), name=f"webhook-lane:{endpoint_id}", daemon=True
                )
                self._threads.add(thread)
                thread.start()

    def _work(self, endpoint_id: str, lane: _Lane) -> None:
        try:
            while True:
                delivery_id = self._next(endpoint_id, lane)
                if delivery_id is None:
                    return
                try:
                    self._attempt(delivery_id)
                except Exception:
                    # The delivery stays due in MongoDB (its lease runs out): the sweep brings it back.
                    log.exception("webhook attempt failed", extra={"delivery_id": delivery_id})
        finally:
            with self._changed:
                self._threads.discard(threading.current_thread())
                self._changed.notify_all()

    def _next(self, endpoint_id: str, lane: _Lane) -> str | None:
        with self._changed:
            while not lane.queued:
                if self._stopping:
                    lane.threads -= 1
                    return None
                lane.idle += 1
                woken = self._changed.wait(self._idle_seconds)
                lane.idle -= 1
                if not woken and not lane.queued:
                    lane.threads -= 1
                    if lane.threads == 0 and not lane.queued:
                        del self._lanes[endpoint_id]
                    return None
            if self._stopping:
                lane.threads -= 1
                return None
            delivery_id = lane.queued.popleft()
            lane.waiting.discard(delivery_id)
            return delivery_id

    def stop(self) -> None:
        """Finish the attempts in hand and take no more; what is queued stays due in MongoDB."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def join(self, timeout: float | None = None) -> None:
        with self._changed:
            self._changed.wait_for(lambda: not self._threads, timeout)


def dispatcher_handler(dispatch: WebhookDispatch, lanes: Lanes) -> Callable[[Incoming, ChannelPublisher], Result]:
    """What the webhooks queue carries: account events of any name (``user.*``) and attempts come due."""

    def handle(message: Incoming, publisher: ChannelPublisher) -> Result:
        if message.type == WebhookAttemptDue.TYPE:
            try:
                due = WebhookAttemptDue.parse(message)
            except MalformedMessage as error:
                return Result.dead_letter(f"malformed: {error}")
            if dispatch.timer_due(due.delivery_id, due.failed_attempts):
                lanes.submit(due.endpoint_id, due.delivery_id)
            return Result.ack()
        if not EVENT_ROUTING_KEY.fullmatch(message.type):
            return Result.dead_letter(f"unexpected message type {message.type[:60]!r}")
        event_id = message.body.get("event_id")
        if not isinstance(event_id, str) or not event_id or len(event_id) > ID_MAX_LENGTH:
            return Result.dead_letter("malformed: an account event needs its event_id")
        # The body as it was published (Outgoing.encoded_body): the same bytes every receiver verifies.
        body = json.dumps(message.body, separators=(",", ":"))
        for delivery_id, endpoint_id in dispatch.fan_out(message.type, event_id, body):
            lanes.submit(endpoint_id, delivery_id)
        return Result.ack()

    return handle


class Sweep(Periodic):
    """Hands the deliveries nobody is working on to the lanes: at start, then every ``interval`` seconds.

    While an endpoint is enabled it also keeps the webhooks queue subscribed to account events, at start
    and every ``feed_interval`` seconds (adapters/webhook_feed.py): an endpoint's creation subscribes it
    first, and this restores the binding to a queue that was deleted and declared again, or to one
    declared by a version that subscribed it at declaration and lost since."""

    def __init__(
        self,
        dispatch: WebhookDispatch,
        lanes: Lanes,
        feed: EventFeed,
        interval: float = SWEEP_SECONDS,
        feed_interval: float = FEED_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._dispatch = dispatch
        self._lanes = lanes
        self._feed = feed
        self._feed_interval = feed_interval
        self._clock = clock
        self._feed_opened_at = -math.inf
        super().__init__("webhook-sweep", interval, self._sweep, "webhook sweep failed; trying again", at_start=True)

    def _sweep(self) -> None:
        if self._clock() - self._feed_opened_at >= self._feed_interval and self._dispatch.has_subscribers():
            try:
                self._feed.open()
                self._feed_opened_at = self._clock()
            except BrokerUnavailable:  # the next sweep tries again; the deliveries below need no broker
                log.warning("webhooks queue not subscribed to account events: the broker did not answer")
        for delivery_id, endpoint_id in self._dispatch.stranded():
            self._lanes.submit(endpoint_id, delivery_id)
