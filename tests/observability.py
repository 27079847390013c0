"""Helpers for tests of logs and metrics: JSON log lines, a message handed to a real Consumer, samples."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from common.logs import json_handler
from common.messaging.consumer import Consumer
from common.messaging.envelope import Outgoing


@contextlib.contextmanager
def json_log_lines(service: str = "test_service", level: int = logging.DEBUG):
    """Every record logged inside the block, as the JSON objects the services write (one per line)."""
    stream = io.StringIO()
    handler = json_handler(service, stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    lines: list[dict] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        raw = stream.getvalue().splitlines()
        lines.extend(json.loads(line) for line in raw)
        assert len(lines) == len(raw)


@dataclass
class FakeChannel:
    """The two channel calls a Consumer makes while settling a message."""

    acked: list[int] = field(default_factory=list)
    published: list[tuple[str, dict]] = field(default_factory=list)

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.acked.append(delivery_tag)

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties, mandatory: bool = False):
        self.published.append((routing_key, dict(properties.headers or {})))


def deliver(consumer: Consumer, message: Outgoing, channel: FakeChannel | None = None) -> FakeChannel:
    """Hand ``message`` to ``consumer`` as the broker would, without a broker."""
    channel = channel or FakeChannel()
    method = SimpleNamespace(delivery_tag=len(channel.acked) + 1)
    consumer._on_message(channel, method, message.properties(), message.encoded_body())
    consumer.on_tick()
    return channel


def metric_samples(exposition: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text as {(sample name, sorted label pairs): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
