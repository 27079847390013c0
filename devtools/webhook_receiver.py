"""A webhook receiver on loopback, as a customer would write one: it verifies every delivery with the
Standard Webhooks reference library (``standardwebhooks``) and answers as the test tells it to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass(frozen=True)
class Received:
    webhook_id: str
    timestamp: str
    signature: str
    body: bytes
    verified: bool
    arrived: float  # time.time() on arrival
    connection: tuple[str, int]  # the sender's address and port: one port for several deliveries is a kept connection


# (the number of this request, 1-based) -> (status, seconds to wait before answering, extra headers)
Answer = Callable[[int], tuple[int, float, dict[str, str]]]


def always(status: int = 200, delay: float = 0.0) -> Answer:
    return lambda number: (status, delay, {})


class Receiver:
    def __init__(self, secrets: list[str] | None = None, answer: Answer | None = None):
        self.secrets = list(secrets or [])
        self.answer = answer or always(200)
        self.received: list[Received] = []
        # Requests read and not yet answered: a sender killed now is killed mid-delivery.
        self.in_flight = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {key.lower(): value for key, value in self.headers.items()}
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            webhook_id=headers.get("webhook-id", ""),
                            timestamp=headers.get("webhook-timestamp", ""),
                            signature=headers.get("webhook-signature", ""),
                            body=body,
                            verified=receiver.verifies(body, headers),
                            arrived=time.time(),
                            connection=self.client_address[:2],
                        )
                    )
                    number = len(receiver.received)
                    receiver.in_flight += 1
                try:
                    status, delay, extra = receiver.answer(number)
                    if delay:
                        time.sleep(delay)
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1
                try:
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting (a timeout): nothing to answer

            def log_message(self, format: str, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a sender that dropped the connection (a timeout, a killed dispatcher) is no error here

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    def verifies(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
