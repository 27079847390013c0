"""``python -m email_service dlq``: look at dead-lettered messages and send them back.

Each work queue ``Q`` has its dead-letter queue ``Q.dead``. A message lands
there from the consumer (``x-dead-letter-reason`` header: malformed, a
permanent SMTP failure, retries exhausted) or from the broker itself when it
passed the queue's delivery limit (``x-death`` header, reason
``delivery_limit``).

Messages are read with ``basic_get`` and stay unacknowledged while the
command runs; the ones it does not take are handed back untouched at the
end. A replayed message goes back the way a retried one does, through the
consuming service's retry exchange, and is acknowledged on the dead-letter
queue only after the broker confirmed its copy on the work queue, so a crash
in between duplicates a message (the worker deduplicates by message id) but
never loses one. Codes in message bodies are masked.

It reads and writes queues of both services, so it runs with the broker's
operator account (compose: ``docker compose run --rm dlq list``), not with a
service's own.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pika
import pika.exceptions

from common.messaging import topology
from common.messaging.connection import close_quietly, parameters
from common.messaging.consumer import republish
from common.messaging.envelope import DEAD_REASON_HEADER, ORIGINAL_QUEUE_HEADER, RETRY_COUNT_HEADER
from common.messaging.topology import Topology
from email_service.entrypoints.operator import as_operator

MASK = "******"
SECRET_FIELDS = ("code", "link_token")
DIGIT_RUN = re.compile(r"\d{4,}")
PREVIEW_CHARACTERS = 400
# Headers that belong to a message's past failures; a replayed message starts afresh.
FAILURE_HEADERS = (RETRY_COUNT_HEADER, DEAD_REASON_HEADER, ORIGINAL_QUEUE_HEADER, "x-delivery-count")
FAILURE_HEADER_PREFIXES = ("x-death", "x-first-death-", "x-last-death-")


@dataclass(frozen=True)
class DeadLetter:
    work_queue: str
    message_id: str | None
    type: str | None
    reason: str
    headers: dict
    body: bytes
    properties: pika.BasicProperties = field(repr=False, compare=False)

    def summary(self) -> dict:
        return {
            "queue": self.work_queue,
            "message_id": self.message_id,
            "type": self.type,
            "reason": self.reason,
        }

    def masked_body(self) -> object:
        """The body with secret fields masked; a body that is not a JSON object only as a masked preview."""
        try:
            parsed = json.loads(self.body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return {key: MASK if key in SECRET_FIELDS else value for key, value in parsed.items()}
        preview = self.body[:PREVIEW_CHARACTERS].decode("utf-8", errors="replace")
        return DIGIT_RUN.sub(MASK, preview)


def dead_reason(headers: dict) -> str:
    """Why the message was dead-lettered: the consumer's reason, else the broker's ``x-death`` record."""
    reason = headers.get(DEAD_REASON_HEADER)
    if isinstance(reason, bytes):
        reason = reason.decode(errors="replace")
    if isinstance(reason, str) and reason:
        return reason
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
        return f"broker: {_text(death.get('reason'))} (from {_text(death.get('queue'))})"
    return "unknown"


def fresh_headers(headers: dict) -> dict:
    return {
        key: value
        for key, value in headers.items()
        if key not in FAILURE_HEADERS and not key.startswith(FAILURE_HEADER_PREFIXES)
    }


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


Selector = Callable[[DeadLetter], bool]


class DeadLetterQueues:
    """The dead-letter queues of some work queues, on one connection with publisher confirms."""

    def __init__(self, rabbitmq_url: str, routes: Topology, work_queues: list[str] | None = None):
        self._url = rabbitmq_url
        self._routes = routes
        self._work_queues = routes.work_queues if work_queues is None else work_queues
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def __enter__(self) -> DeadLetterQueues:
        self._connection = pika.BlockingConnection(parameters(self._url, "email_service dlq"))
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        return self

    def __exit__(self, *exc) -> None:
        close_quietly(self._connection)

    def counts(self) -> dict[str, int]:
        return {queue: self._depth(topology.WorkQueue(queue).dead_letter_queue) for queue in self._work_queues}

    def browse(self) -> list[DeadLetter]:
        """Every dead letter, left in place."""
        found: list[DeadLetter] = []
        for queue in self._work_queues:
            found.extend(letter for _, letter in self._take(queue))
            self._hand_back_unsettled()
        return found

    def replay(self, select: Selector) -> list[DeadLetter]:
        """Move the selected dead letters back to their work queue, retry counters reset."""
        return self._settle_selected(select, republish=True)

    def purge(self, select: Selector) -> list[DeadLetter]:
        """Drop the selected dead letters for good."""
        return self._settle_selected(select, republish=False)

    def _settle_selected(self, select: Selector, republish: bool) -> list[DeadLetter]:
        settled: list[DeadLetter] = []
        for queue in self._work_queues:
            for tag, letter in self._take(queue):
                if not select(letter):
                    continue
                if republish:
                    self._republish(queue, letter)
                self._channel.basic_ack(tag)
                settled.append(letter)
            self._hand_back_unsettled()
        return settled

    def _hand_back_unsettled(self) -> None:
        # delivery tag 0 with multiple=True: every message this channel still holds.
        self._channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)

    def _republish(self, queue: str, letter: DeadLetter) -> None:
        exchange = self._routes.inbox_of(queue).retries_exchange
        republish(self._channel, exchange, queue, letter.properties, letter.body, fresh_headers(letter.headers))

    def _take(self, queue: str) -> Iterator[tuple[int, DeadLetter]]:
        """Fetch (unacknowledged) the messages that were in the dead-letter queue when we started.

        Stopping at the starting depth keeps a replayed message that dies again
        from being fetched a second time in the same run."""
        dead_letter_queue = topology.WorkQueue(queue).dead_letter_queue
        for _ in range(self._depth(dead_letter_queue)):
            method, properties, body = self._channel.basic_get(dead_letter_queue, auto_ack=False)
            if method is None:
                return
            headers = dict(properties.headers or {})
            letter = DeadLetter(
                work_queue=queue,
                message_id=properties.message_id,
                type=_message_type(properties, body),
                reason=dead_reason(headers),
                headers=headers,
                body=body,
                properties=properties,
            )
            yield method.delivery_tag, letter

    def _depth(self, queue: str) -> int:
        try:
            return self._channel.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as error:
            if error.reply_code != 404:
                raise
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
            return 0


def _message_type(properties: pika.BasicProperties, body: bytes) -> str | None:
    if properties.type:
        return properties.type
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    value = parsed.get("type") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="dlq_command", required=True)
    listing = commands.add_parser("list", help="count and list dead-lettered messages with their reasons")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = commands.add_parser("show", help="print one dead-lettered message (codes masked)")
    show.add_argument("message_id")
    for name, verb in (("replay", "move back to the work queue"), ("purge", "delete for good")):
        command = commands.add_parser(name, help=f"{verb}: every dead letter (--all) or the given message ids")
        chosen = command.add_mutually_exclusive_group(required=True)
        chosen.add_argument("--all", action="store_true")
        chosen.add_argument("message_ids", nargs="*", default=[], metavar="MESSAGE_ID")
    for command in commands.choices.values():
        command.add_argument("--queue", action="append", help="only this work queue (repeatable)")


def run(args: argparse.Namespace, rabbitmq_url: str, routes: Topology, out=print) -> int:
    work_queues = routes.work_queues
    queues = args.queue or work_queues
    unknown = sorted(set(queues) - set(work_queues))
    if unknown:
        out(f"unknown work queue(s): {', '.join(unknown)}; known: {', '.join(work_queues)}")
        return 2

    def work() -> int:
        with DeadLetterQueues(rabbitmq_url, routes, queues) as dead:
            return _run(args, dead, out)

    return as_operator("the dlq command", work, out)


def _run(args: argparse.Namespace, dead: DeadLetterQueues, out) -> int:
    if args.dlq_command == "list":
        return _list(dead, args.json, out)
    if args.dlq_command == "show":
        return _show(dead, args.message_id, out)
    wanted = set(args.message_ids)

    def select(letter: DeadLetter) -> bool:
        return args.all or letter.message_id in wanted

    settled = dead.replay(select) if args.dlq_command == "replay" else dead.purge(select)
    verb = "replayed" if args.dlq_command == "replay" else "purged"
    for letter in settled:
        out(f"{verb} {letter.message_id} ({letter.work_queue})")
    missing = wanted - {letter.message_id for letter in settled}
    for message_id in sorted(missing):
        out(f"not found: {message_id}")
    out(f"{verb}: {len(settled)}")
    return 1 if missing else 0


def _list(dead: DeadLetterQueues, as_json: bool, out) -> int:
    counts = dead.counts()
    letters = dead.browse()
    if as_json:
        for letter in letters:
            out(json.dumps(letter.summary()))
        return 0
    for queue, count in counts.items():
        out(f"{topology.WorkQueue(queue).dead_letter_queue}: {count} message(s)")
    for letter in letters:
        out(f"  {letter.message_id or '-'}  {letter.type or '-'}  {letter.reason}")
    return 0


def _show(dead: DeadLetterQueues, message_id: str, out) -> int:
    for letter in dead.browse():
        if letter.message_id == message_id:
            headers = {key: _printable(value) for key, value in letter.headers.items()}
            out(json.dumps({**letter.summary(), "headers": headers, "body": letter.masked_body()}, indent=2))
            return 0
    out(f"not found: {message_id}")
    return 1


def _printable(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [_printable(item) for item in value]
    if isinstance(value, dict):
        return {key: _printable(item) for key, item in value.items()}
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
