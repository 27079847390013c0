"""Message envelopes: JSON bodies with a ``type``, persistent, with a unique id."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

import pika

CONTENT_TYPE = "application/json"
PERSISTENT = pika.DeliveryMode.Persistent
REQUEST_ID_HEADER = "x-request-id"
RETRY_COUNT_HEADER = "x-retry-count"
DEAD_REASON_HEADER = "x-dead-letter-reason"
ORIGINAL_QUEUE_HEADER = "x-original-queue"


class MalformedMessage(ValueError):
    """The message cannot be understood; retrying it would not help."""


@dataclass(frozen=True)
class Outgoing:
    """A message ready to publish: body plus the AMQP properties it needs."""

    type: str
    body: dict
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    request_id: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    # Per-message TTL: a message published into a delay queue is due after this many milliseconds.
    expiration_ms: int | None = None
    # The W3C trace context of the span that publishes it (common/tracing.py), set as it goes out.
    trace_headers: dict[str, str] = field(default_factory=dict)

    def encoded_body(self) -> bytes:
        return json.dumps({**self.body, "type": self.type}, separators=(",", ":")).encode()

    def properties(self) -> pika.BasicProperties:
        headers: dict[str, str] = dict(self.trace_headers)
        if self.request_id:
            headers[REQUEST_ID_HEADER] = self.request_id
        return pika.BasicProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            message_id=self.message_id,
            type=self.type,
            reply_to=self.reply_to,
            correlation_id=self.correlation_id,
            headers=headers,
            expiration=None if self.expiration_ms is None else str(max(0, self.expiration_ms)),
        )


@dataclass(frozen=True)
class Incoming:
    """A delivered message, parsed far enough to route it."""

    type: str
    body: dict
    message_id: str
    request_id: str | None
    reply_to: str | None
    correlation_id: str | None
    headers: dict

    @classmethod
    def parse(cls, properties: pika.BasicProperties, raw: bytes) -> Incoming:
        headers = dict(properties.headers or {})
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MalformedMessage(f"body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise MalformedMessage("body is not a JSON object")
        message_type = body.get("type")
        if not isinstance(message_type, str) or not message_type:
            raise MalformedMessage("body has no string 'type'")
        message_id = properties.message_id
        if not isinstance(message_id, str) or not message_id:
            raise MalformedMessage("message has no message_id")
        request_id = headers.get(REQUEST_ID_HEADER)
        return cls(
            type=message_type,
            body=body,
            message_id=message_id,
            request_id=request_id if isinstance(request_id, str) else None,
            reply_to=properties.reply_to or None,
            correlation_id=properties.correlation_id or None,
            headers=headers,
        )
