"""Queue topology: the exchanges each message kind travels through, and the retry ladder.

Messages between the services never go through the default exchange: with
write permission on it, a broker account can put a message into any queue by
its name. They travel through named exchanges instead, so that the broker's
permissions (common.messaging.access derives them from this module) can say
who may send what:

- ``verification.to_worker`` (direct): auth publishes code requests and code
  submissions; the worker binds ACCOUNT_CREATION_QUEUE and
  CONFIRM_EMAIL_CODE_QUEUE to it.
- ``verification.to_auth`` (direct): the worker publishes confirmations;
  auth binds ACCOUNT_CONFIRMED_QUEUE to it.
- ``verification.replies`` (direct): the worker answers a code submission
  to the ``reply_to`` it names; each auth process binds an exclusive reply
  queue of its own. (Direct reply-to would need the worker to publish to the
  default exchange, which is the permission the whole design withholds.)
- ``verification.<service>.retries`` (direct): a consumer's own route into
  the retry and dead-letter queues of the queues it consumes, and back.

The routing key is always a queue's name, so several copies of the system,
each with queue names of its own, share the exchanges safely.

A work queue ``Q`` is a durable quorum queue with a delivery limit. Messages
that exceed the limit (a consumer crashing on them again and again) are
dead-lettered by the broker into ``Q.dead``. Transient failures are parked in
``Q.retry.<n>s``: a queue with a fixed message TTL whose dead-letter route
leads back to ``Q``, so a retried message waits in the broker, not in a
sleeping consumer, and a short delay never queues behind a long one.

Only the consumer of a queue declares it, its retry and dead-letter queues,
and their bindings. RabbitMQ asks for read permission on a queue to create it
with a dead-letter exchange, and for write permission on it to bind it; an
account that may bind a queue may bind it to any exchange it can read, so if
each service declared every queue, each could route its own messages into the
other's queues. Both services declare the exchanges, all from this module with
the same arguments. A producer that publishes before the consumer ever
started on a fresh broker finds no route: auth's outbox keeps such a
registration until the worker has bound its queue.

On a cluster every quorum queue is replicated over ``QUORUM_INITIAL_GROUP_SIZE``
nodes (0: the broker's default, every node of the cluster at declaration) and
its leader placed by ``QUORUM_LEADER_LOCATOR`` (``balanced`` spreads the
leaders over the nodes; by default it is chosen when ``RABBITMQ_URL`` names
several nodes). RabbitMQ compares both arguments when a queue is declared
again, so a deployment keeps the values its queues were created with.

The delays are a setting (``RETRY_DELAYS_SECONDS``) read by both services.
A retry queue's name carries its delay, so two ladders can never clash on
queue arguments; both services should still use the same one.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass

DELIVERY_LIMIT = 10
RETRY_DELAYS_SECONDS = (2, 10, 30, 120)
# WEBHOOK_RETRY_SCHEDULE's default: seconds before each retry of a failed webhook delivery.
WEBHOOK_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000)
# Every account event, whatever its name: the webhook dispatcher needs no change for a new one.
ALL_ACCOUNT_EVENTS = "user.#"

TO_WORKER_EXCHANGE = "verification.to_worker"
TO_AUTH_EXCHANGE = "verification.to_auth"
REPLIES_EXCHANGE = "verification.replies"
WORKER_RETRIES_EXCHANGE = "verification.worker.retries"
AUTH_RETRIES_EXCHANGE = "verification.auth.retries"
SHARED_EXCHANGES = (TO_WORKER_EXCHANGE, TO_AUTH_EXCHANGE, REPLIES_EXCHANGE)
# Reply queues are named here, not by the broker, so that permissions can name them.
REPLY_QUEUE_PREFIX = "verification.replies."
DEFAULT_EVENTS_EXCHANGE = "account.events"
# Each auth process's own queue of session-end events (exclusive, gone with its connection).
SESSION_ENDS_QUEUE_PREFIX = "auth.session_ends."
# The contract's account events are all "user.<event>": a destination of this form is an event's
# routing key on the events exchange, not a queue (auth's broker account may publish no other key there).
EVENT_ROUTING_KEY = re.compile(r"user\.[a-z_]+")
# The events the worker mails a notice about; its notification queue is bound to these alone.
MAILED_EVENTS = (
    "user.verified",
    "user.password_changed",
    "user.login_failures",
    "user.locked",
    "user.unlocked",
    "user.login_new_device",
)


@dataclass(frozen=True)
class Replication:
    """How a quorum queue spreads over a cluster: its initial group size (0: the broker's
    default) and its leader locator ("": the broker's default)."""

    group_size: int = 0
    leader_locator: str = ""

    def arguments(self) -> dict:
        arguments: dict = {"x-queue-type": "quorum"}
        if self.group_size:
            arguments["x-quorum-initial-group-size"] = self.group_size
        if self.leader_locator:
            arguments["x-queue-leader-locator"] = self.leader_locator
        return arguments


@dataclass(frozen=True)
class WorkQueue:
    name: str
    retry_delays: tuple[int, ...] = RETRY_DELAYS_SECONDS
    replication: Replication = Replication()
    # Routing keys on the events exchange whose events this queue receives.
    topics: tuple[str, ...] = ()
    # Bound to its topics only once something wants them (``subscribe``), not when declared: the webhooks
    # queue, which has no reader of its events until an endpoint exists.
    topics_on_demand: bool = False
    # A delay queue: its messages carry their own TTL (AMQP ``expiration``) and are dead-lettered
    # into this queue when it runs out, which schedules work with the broker (a lock's end).
    delayed: bool = False

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dead"

    @property
    def delay_queue(self) -> str:
        return f"{self.name}.delayed"

    @property
    def long_delay_queue(self) -> str:
        """A second delay queue for timers of days (a deletion's grace). A message expires only at the
        head of its queue: in the first, a week-long timer would hold back every lock's end behind it."""
        return f"{self.name}.delayed.long"

    def retry_queue(self, attempt: int) -> str:
        """The retry queue for the given retry number (0-based), capped at the last step."""
        return self.retry_queues[min(attempt, len(self.retry_delays) - 1)]

    @property
    def retry_queues(self) -> list[str]:
        return [f"{self.name}.retry.{delay}s" for delay in self.retry_delays]

    @property
    def max_retries(self) -> int:
        return len(self.retry_delays)


@dataclass(frozen=True)
class Inbox:
    """The work queues one service consumes, where their producer sends them, and the consumer's retry route."""

    exchange: str
    retries_exchange: str
    queues: tuple[WorkQueue, ...]
    events_exchange: str = DEFAULT_EVENTS_EXCHANGE


@dataclass(frozen=True)
class Topology:
    """The three work queues of one copy of the system (their names are settings) and its retry ladder."""

    account_creation: str
    confirm_email_code: str
    account_confirmed: str
    retry_delays: tuple[int, ...] = RETRY_DELAYS_SECONDS
    replication: Replication = Replication()
    # The worker's queue of account events it mails about (None: a topology without notices).
    account_notifications: str | None = None
    events_exchange: str = DEFAULT_EVENTS_EXCHANGE
    # Auth's webhook dispatcher queue (None: a topology without webhooks), bound to every account event.
    # Its retry queues are the webhook schedule's, not the ladder's: a delivery's retry is published
    # into the queue of its step and comes back to the dispatcher when that step's time is up.
    webhooks: str | None = None
    webhook_schedule: tuple[int, ...] = WEBHOOK_RETRY_SCHEDULE

    @property
    def webhook_inbox(self) -> Inbox | None:
        """The dispatcher's queue; auth alone publishes to it (its retries and retries by hand), through
        its own retries exchange."""
        if self.webhooks is None:
            return None
        queue = WorkQueue(
            self.webhooks, self.webhook_schedule, self.replication, topics=(ALL_ACCOUNT_EVENTS,), topics_on_demand=True
        )
        return Inbox(AUTH_RETRIES_EXCHANGE, AUTH_RETRIES_EXCHANGE, (queue,), self.events_exchange)

    def _inboxes(self) -> list[Inbox]:
        webhooks = self.webhook_inbox
        return [self.worker, self.auth] if webhooks is None else [self.worker, self.auth, webhooks]

    @property
    def worker(self) -> Inbox:
        queues = [self.work_queue(self.account_creation), self.work_queue(self.confirm_email_code)]
        if self.account_notifications is not None:
            queues.append(
                WorkQueue(self.account_notifications, self.retry_delays, self.replication, topics=MAILED_EVENTS)
            )
        return Inbox(TO_WORKER_EXCHANGE, WORKER_RETRIES_EXCHANGE, tuple(queues), self.events_exchange)

    @property
    def auth(self) -> Inbox:
        confirmed = WorkQueue(self.account_confirmed, self.retry_delays, self.replication, delayed=True)
        return Inbox(TO_AUTH_EXCHANGE, AUTH_RETRIES_EXCHANGE, (confirmed,), self.events_exchange)

    @property
    def work_queues(self) -> list[str]:
        names = [self.account_creation, self.confirm_email_code, self.account_confirmed]
        return names if self.account_notifications is None else [*names, self.account_notifications]

    def work_queue(self, name: str) -> WorkQueue:
        webhooks = self.webhook_inbox
        if webhooks is not None and name == self.webhooks:
            return webhooks.queues[0]
        return WorkQueue(name, self.retry_delays, self.replication)

    def inbox_of(self, queue: str) -> Inbox:
        """The inbox that holds ``queue``: its exchange is where a message for it is published."""
        for inbox in self._inboxes():
            if any(work_queue.name == queue for work_queue in inbox.queues):
                return inbox
        raise KeyError(f"{queue!r} is not a work queue of this topology")

    def route(self, destination: str) -> tuple[str, str, bool]:
        """(exchange, routing key, mandatory) of a destination: an event's routing key, a delay
        queue, or a work queue. Events are not mandatory: a topic exchange drops an event nobody
        has bound, as publish-subscribe does; a queue's message must reach its queue.

        Asked for every publish: the answer is kept per (topology, destination), as the inboxes it is
        read from are built anew on each access (docs/performance.md, "Earlier runs: 2026-12-07 night")."""
        return _route(self, destination)

    def _find_route(self, destination: str) -> tuple[str, str, bool]:
        if EVENT_ROUTING_KEY.fullmatch(destination):
            return self.events_exchange, destination, False
        for inbox in (self.worker, self.auth):
            for queue in inbox.queues:
                if queue.delayed and destination in (queue.delay_queue, queue.long_delay_queue):
                    return inbox.retries_exchange, destination, True
        webhooks = self.webhook_inbox
        if webhooks is not None and destination in webhooks.queues[0].retry_queues:
            return webhooks.retries_exchange, destination, True
        return self.inbox_of(destination).exchange, destination, True


@functools.lru_cache(maxsize=1024)
def _route(topology: Topology, destination: str) -> tuple[str, str, bool]:
    # The destinations are this system's queues and event names, a few dozen; a made-up one raises
    # KeyError, which lru_cache does not keep.
    return topology._find_route(destination)


def declare(channel, inbox: Inbox) -> None:
    """Declare the exchanges, then the inbox's queues with their retry and dead-letter queues
    and bindings (idempotent)."""
    declare_exchanges(channel, inbox)
    for queue in inbox.queues:
        declare_queue(channel, inbox, queue)


def declare_exchanges(channel, inbox: Inbox) -> None:
    for exchange in (*SHARED_EXCHANGES, inbox.retries_exchange):
        channel.exchange_declare(exchange, exchange_type="direct", durable=True)
    channel.exchange_declare(inbox.events_exchange, exchange_type="topic", durable=True)


def declare_queue(channel, inbox: Inbox, queue: WorkQueue) -> None:
    """One work queue of ``inbox``, its retry and dead-letter queues, and their bindings."""
    quorum = queue.replication.arguments()
    channel.queue_declare(queue=queue.dead_letter_queue, durable=True, arguments=quorum)
    channel.queue_declare(
        queue=queue.name,
        durable=True,
        arguments={
            **quorum,
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": inbox.retries_exchange,
            "x-dead-letter-routing-key": queue.dead_letter_queue,
        },
    )
    for delay, retry_queue in zip(queue.retry_delays, queue.retry_queues):
        channel.queue_declare(
            queue=retry_queue,
            durable=True,
            arguments={
                **quorum,
                "x-message-ttl": delay * 1000,
                "x-dead-letter-exchange": inbox.retries_exchange,
                "x-dead-letter-routing-key": queue.name,
            },
        )
    parked = [queue.dead_letter_queue, *queue.retry_queues]
    if queue.delayed:
        # No TTL of its own: each message says when it is due, and goes back to the work queue then.
        for delay_queue in (queue.delay_queue, queue.long_delay_queue):
            channel.queue_declare(
                queue=delay_queue,
                durable=True,
                arguments={
                    **quorum,
                    "x-dead-letter-exchange": inbox.retries_exchange,
                    "x-dead-letter-routing-key": queue.name,
                },
            )
            parked.append(delay_queue)
    channel.queue_bind(queue.name, inbox.exchange, routing_key=queue.name)
    if not queue.topics_on_demand:
        bind_topics(channel, inbox, queue)
    for name in (queue.name, *parked):
        channel.queue_bind(name, inbox.retries_exchange, routing_key=name)


def bind_topics(channel, inbox: Inbox, queue: WorkQueue) -> None:
    for topic in queue.topics:
        channel.queue_bind(queue.name, inbox.events_exchange, routing_key=topic)


def subscribe(channel, inbox: Inbox) -> None:
    """Declare ``inbox`` and bind each of its queues to its topics (idempotent): what a queue with topics
    on demand receives from now on. The binding is never taken away (see docs/decisions/webhook-feed.md)."""
    declare(channel, inbox)
    for queue in inbox.queues:
        bind_topics(channel, inbox, queue)


def declare_reply_queue(channel) -> str:
    """An exclusive queue for the replies to this connection's requests, bound under its own name."""
    name = f"{REPLY_QUEUE_PREFIX}{uuid.uuid4().hex}"
    channel.queue_declare(queue=name, exclusive=True, auto_delete=True)
    channel.queue_bind(name, REPLIES_EXCHANGE, routing_key=name)
    return name
