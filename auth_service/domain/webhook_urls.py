"""Which webhook URLs and addresses the service may call (the SSRF guard's rules). Pure Python, no I/O.

A webhook URL is chosen by an operator but points anywhere: without a guard it
would let an admin key reach the cloud's metadata service, the database or an
internal admin page from inside the network. Only ``http`` and ``https`` are
spoken, and every address a host resolves to must be a public unicast one
(unless WEBHOOK_ALLOW_PRIVATE_URLS, for development and tests). Resolving and
connecting happen once per connection, to the address checked here
(auth_service/adapters/webhook_http.py), so DNS cannot answer differently
between the check and the connection.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from auth_service.domain.webhooks import MAX_URL_LENGTH, InvalidEndpoint

SCHEMES = {"http": 80, "https": 443}
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(Exception):
    """The host resolves to an address the guard refuses."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # a name, or an address without brackets
    port: int


def parse_url(url: object) -> Target:
    """The URL's scheme, host and port; ``InvalidEndpoint`` for anything but an absolute http(s) URL."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidEndpoint("url", f"must be an http or https URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidEndpoint("url", "is not a valid URL") from None
    if parts.scheme not in SCHEMES:
        raise InvalidEndpoint("url", "must use http or https")
    if not parts.hostname:
        raise InvalidEndpoint("url", "must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidEndpoint("url", "must not carry credentials")
    if any(character.isspace() for character in url):
        raise InvalidEndpoint("url", "must not contain spaces")
    return Target(parts.scheme, parts.hostname, port or SCHEMES[parts.scheme])


def refusal(address: str, allow_private: bool) -> str | None:
    """Why the guard refuses to connect to ``address``, or None if it may."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    if ip in METADATA_ADDRESSES:
        return "the cloud metadata address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if allow_private:
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a private or reserved address"
    return None


def literal_address(host: str) -> str | None:
    """The host as an address, if it is one (``127.0.0.1``, ``::1``), else None (a name)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def check_addresses(addresses: list[str], allow_private: bool) -> None:
    """Every address a host resolves to must pass, not only the first: a name answering with one public
    and one private address must not be a way in."""
    if not addresses:
        raise RefusedAddress("the host resolves to no address")
    for address in addresses:
        reason = refusal(address, allow_private)
        if reason is not None:
            raise RefusedAddress(f"the host resolves to {reason}")
