"""A loopback TCP server that serves each connection on a thread of its own (the harness's
balancer and MongoDB stand-in)."""

from __future__ import annotations

import contextlib
import socket
import threading


class ThreadedTcpServer:
    def __init__(self, port: int, name: str):
        self.port = port
        self._name = name
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()

    def start(self):
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=256)
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, name=self._name, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.close()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def serve(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections.add(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(None)
        try:
            with connection:
                self.serve(connection)
        except OSError:
            pass  # the peer went away, or stop closed the connection
        finally:
            self._connections.discard(connection)
