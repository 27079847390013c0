"""Hostile or broken peers of the auth service's HTTP edge, shared by its tests and ``bench/http_edge.py``.

- ``SilentServer``: accepts connections, reads what is sent and never answers, as a hung Redis does.
- ``half_open_connections``: connections that send part of a request line, then nothing (slowloris).
- ``upload_headers`` / ``read_response``: an upload announced by its Content-Length alone, and the answer to it.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading


class SilentServer:
    """A TCP server on loopback that takes every connection and every byte, and answers nothing."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        return self._server.getsockname()[1]

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> SilentServer:
        threading.Thread(target=self._accept, name="silent-server", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._server.close()
        for connection in self._held:
            connection.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while not self._stopping.is_set():
                connection, _ = self._server.accept()
                self._held.append(connection)
                threading.Thread(target=self._drain, args=(connection,), daemon=True).start()

    def _drain(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._stopping.is_set() and connection.recv(65536):
                pass


def half_open_connections(port: int, count: int, host: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` connections, each holding a request line that never ends; the caller closes them."""
    connections = []
    try:
        for _ in range(count):
            connection = socket.create_connection((host, port), timeout=5)
            connections.append(connection)
            connection.sendall(b"GET /healthz HT")
    except BaseException:
        for connection in connections:
            connection.close()
        raise
    return connections


def upload_headers(path: str, content_length: int) -> bytes:
    """The head of a JSON POST of ``content_length`` bytes, without the body."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def read_response(connection: socket.socket) -> tuple[int, http.client.HTTPMessage, bytes]:
    """The answer waiting on a raw connection: (status, headers, body)."""
    response = http.client.HTTPResponse(connection)
    response.begin()
    return response.status, response.headers, response.read()
