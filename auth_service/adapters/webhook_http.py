"""The webhook deliveries' HTTP client: one POST per attempt, guarded against SSRF, on kept connections.

urllib3 keeps a pool of connections per host (scheme, host, port), so an endpoint that answers is
not paid a TCP and TLS handshake per event. Each new connection resolves its host once, checks
every address against the guard (auth_service/domain/webhook_urls.py) and connects to the checked
address itself: no second lookup happens that DNS rebinding could answer differently. TLS still
verifies the certificate against the host's name (urllib3 sends it as SNI). Redirects are never
followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from auth_service.adapters.webhook_addresses import Resolve, resolve_host
from auth_service.domain.webhook_urls import RefusedAddress, check_addresses
from auth_service.domain.webhooks import AttemptOutcome, AttemptResult

# Only the status matters; a receiver's answer body is read this far, so that the connection can be kept.
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "auth-service-webhooks/1"

Connect = Callable[[tuple[str, int], float | None], socket.socket]


def connect_to(address: tuple[str, int], timeout: float | None) -> socket.socket:
    sock = socket.create_connection(address, timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _Guard:
    def __init__(self, allow_private: bool, resolve: Resolve, connect: Connect):
        self.allow_private = allow_private
        self.resolve = resolve
        self.connect = connect

    def open(self, connection: HTTPConnection) -> socket.socket:
        host, port = connection._dns_host, connection.port
        try:
            addresses = self.resolve(host, port)
        except OSError as error:
            raise NewConnectionError(connection, f"the host does not resolve ({error.strerror or error})") from None
        check_addresses(addresses, self.allow_private)
        last: OSError | None = None
        for address in addresses:
            try:
                return self.connect((address, port), connection.timeout)
            except TimeoutError as error:
                raise ConnectTimeoutError(connection, "connection timed out") from error
            except OSError as error:
                last = error
        raise NewConnectionError(connection, f"cannot connect ({last.strerror if last else 'no address'})")


def _pool_classes(guard: _Guard) -> dict[str, type]:
    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return guard.open(self)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return guard.open(self)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}


class WebhookClient:
    """POSTs a signed event; thread-safe (urllib3's pools are), shared by every lane."""

    def __init__(
        self,
        allow_private: bool,
        *,
        connections_per_host: int = 4,
        resolve: Resolve = resolve_host,
        connect: Connect = connect_to,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._http = urllib3.PoolManager(num_pools=200, maxsize=connections_per_host, block=False, retries=False)
        self._http.pool_classes_by_scheme = _pool_classes(_Guard(allow_private, resolve, connect))
        self._clock = clock

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float) -> AttemptResult:
        started = self._clock()
        try:
            response = self._http.request(
                "POST",
                url,
                body=body,
                headers={**headers, "user-agent": USER_AGENT},
                timeout=urllib3.Timeout(total=timeout_seconds),
                redirect=False,
                retries=False,
                preload_content=False,
            )
        except RefusedAddress as refused:
            return AttemptResult(AttemptOutcome.REFUSED, self._clock() - started, error=str(refused))
        except NewConnectionError as error:
            # Told apart before timeouts: urllib3 makes a refused connection a kind of connect timeout.
            return AttemptResult(AttemptOutcome.CONNECTION_ERROR, self._clock() - started, error=_reason(error))
        except urllib3.exceptions.TimeoutError:
            return AttemptResult(AttemptOutcome.TIMEOUT, self._clock() - started, error="timed out")
        except urllib3.exceptions.HTTPError as error:
            return AttemptResult(AttemptOutcome.CONNECTION_ERROR, self._clock() - started, error=_reason(error))
        status = response.status
        _finish(response)
        if 200 <= status < 300:
            outcome = AttemptOutcome.SUCCESS
        elif 300 <= status < 400:
            outcome = AttemptOutcome.REDIRECT
        else:
            outcome = AttemptOutcome.HTTP_ERROR
        return AttemptResult(outcome, self._clock() - started, status_code=status)

    def close(self) -> None:
        self._http.clear()


def _finish(response: urllib3.BaseHTTPResponse) -> None:
    """Read a short answer so the connection can serve the next attempt; drop the connection otherwise."""
    try:
        answer = response.read(MAX_ANSWER_BYTES + 1)
        if len(answer) > MAX_ANSWER_BYTES:
            response.close()
    except (urllib3.exceptions.HTTPError, OSError):
        response.close()
    finally:
        response.release_conn()


def _reason(error: Exception) -> str:
    """What went wrong, without the URL (its path or query may be a credential of the receiver's)."""
    text = str(error)
    for marker in ("the host does not resolve", "cannot connect", "timed out"):
        if marker in text:
            return text[text.index(marker) :][:200]
    return type(error).__name__
