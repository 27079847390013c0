"""Where a webhook endpoint's host points: the guard at an endpoint's creation, and the lookup every
delivery's connection repeats (auth_service/adapters/webhook_http.py).

Kept apart from the HTTP client so that the API process, which only creates endpoints, does not load
urllib3 (docs/decisions/lazy-http-clients.md).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from auth_service.domain.webhook_urls import check_addresses

Resolve = Callable[[str, int], list[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an address resolves to itself, without DNS)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(address[4][0]) for address in found))


class AddressChecker:
    """The guard at an endpoint's creation: the addresses its host resolves to now. A name that does not
    resolve yet passes (it may resolve only where the dispatchers run); every connection checks again."""

    def __init__(self, allow_private: bool, resolve: Resolve = resolve_host):
        self._allow_private = allow_private
        self._resolve = resolve

    def __call__(self, host: str, port: int) -> None:
        try:
            addresses = self._resolve(host, port)
        except OSError:
            return
        check_addresses(addresses, self._allow_private)
