"""The auth service's edge: waitress's options from the settings, and the budget of confirms waiting for a verdict.

What these options do to real connections is shown on the real server in
tests/integration/test_http_edge.py; here, that waitress takes them as meant.
"""

from __future__ import annotations

import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from waitress.adjustments import Adjustments

from auth_service.adapters.rabbitmq import RabbitMessageBus, ReplyWaits
from auth_service.config import Settings
from auth_service.entrypoints import server
from auth_service.ports import BrokerUnavailable
from common.messaging.envelope import Outgoing

DEVELOPMENT = {"APP_ENV": "development"}


def adjustments(**env: str) -> Adjustments:
    return Adjustments(**server.server_options(Settings.from_env({**DEVELOPMENT, **env})))


def test_waitress_takes_the_connection_and_body_limits_from_the_settings():
    default = adjustments()
    assert (default.connection_limit, default.channel_timeout, default.cleanup_interval) == (1000, 30, 10)
    assert default.asyncore_use_poll
    # waitress refuses a Content-Length at or over its cap; the application allows MAX_BODY_BYTES exactly.
    assert default.max_request_body_size == 16 * 1024 + 1
    tuned = adjustments(
        AUTH_CONNECTION_LIMIT="50",
        AUTH_CHANNEL_TIMEOUT_SECONDS="5",
        AUTH_CLEANUP_INTERVAL_SECONDS="2",
        MAX_BODY_BYTES="4096",
        AUTH_THREADS="3",
    )
    assert (tuned.connection_limit, tuned.channel_timeout, tuned.cleanup_interval) == (50, 5, 2)
    assert (tuned.max_request_body_size, tuned.threads) == (4097, 3)


def test_without_proxy_hops_no_peer_is_trusted_and_forwarding_headers_are_dropped():
    default = adjustments()
    assert default.trusted_proxy is None
    assert default.clear_untrusted_proxy_headers


def test_behind_proxies_only_the_named_peer_is_trusted_for_as_many_hops():
    behind = adjustments(PROXY_HOPS="2", TRUSTED_PROXY="10.0.0.7")
    assert (behind.trusted_proxy, behind.trusted_proxy_count) == ("10.0.0.7", 2)
    assert behind.trusted_proxy_headers == {"x-forwarded-for"}
    assert behind.clear_untrusted_proxy_headers
    assert adjustments(PROXY_HOPS="1").trusted_proxy == "127.0.0.1"


def test_the_open_file_limit_is_raised_toward_the_connection_limit(monkeypatch):
    limits = {"soft": 256, "hard": 4096}
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (limits["soft"], limits["hard"]))
    monkeypatch.setattr(resource, "setrlimit", lambda kind, value: limits.update(soft=value[0]))
    server.allow_descriptors(1000)
    assert limits["soft"] == 1000 + server.SPARE_DESCRIPTORS
    server.allow_descriptors(10_000)
    assert limits["soft"] == 4096  # never past the hard limit


def submission() -> Outgoing:
    return Outgoing(type="email_code.submitted", body={}, correlation_id="c")


def test_a_burst_past_the_slots_waits_for_one_while_replies_keep_coming():
    waits = ReplyWaits(1, slow_after=5.0)
    first = waits.take()
    threading.Timer(0.1, waits.give_back, [first]).start()
    second, elapsed = timed(waits.take)
    assert second is not None and 0.05 < elapsed < 2


def test_once_the_oldest_wait_is_slow_newcomers_are_refused_at_once():
    waits = ReplyWaits(2, slow_after=0.2)
    held = [waits.take(), waits.take()]
    refused, elapsed = timed(waits.take)
    assert refused is None and 0.15 < elapsed < 1  # waited only until the oldest wait turned slow
    refused, elapsed = timed(waits.take)
    assert refused is None and elapsed < 0.05
    waits.give_back(held[0])
    assert waits.take() is not None


def timed(call):
    started = time.monotonic()
    return call(), time.monotonic() - started


def test_a_request_refused_for_a_slow_replier_publishes_nothing(monkeypatch):
    bus = RabbitMessageBus("amqp://127.0.0.1:1/%2F", [], max_waiting_replies=2, slow_reply_seconds=0.1)
    release = threading.Event()
    waiting = threading.Semaphore(0)
    published = []

    def slow_request(queue, message, timeout):
        published.append(message)
        waiting.release()
        release.wait(5)
        return None

    monkeypatch.setattr(bus, "_request", slow_request)
    bus.ready.set()  # as if the broker link were up
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(bus.request, "q", submission(), 5) for _ in range(2)]
        for _ in held:
            assert waiting.acquire(timeout=5)
        with pytest.raises(BrokerUnavailable, match="slow reply"):
            bus.request("q", submission(), 5)
        assert len(published) == 2
        release.set()
        assert [future.result() for future in held] == [None, None]
    assert bus.request("q", submission(), 5) is None  # the slots are back once the replies came
