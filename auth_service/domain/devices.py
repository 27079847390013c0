"""What a device is, for "new sign-in" notices. Pure rules, no I/O.

A device is the ``X-Device-Id`` header if the app sends one, else the
User-Agent and the network it comes from (/24 for IPv4, /64 for IPv6), so a
phone moving between addresses of one network stays one device. Only a hash of
it is stored.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

KNOWN_DEVICES_KEPT = 20
DEVICE_ID_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 200
UNKNOWN_DEVICE = "an unknown device"


@dataclass(frozen=True)
class Device:
    """A login's device as the request shows it."""

    ip: str
    user_agent: str | None = None
    device_id: str | None = None

    @property
    def key(self) -> str:
        """The device's identity, hashed (it is stored on the account)."""
        if self.device_id:
            identity = "id:" + self.device_id[:DEVICE_ID_MAX_LENGTH]
        else:
            identity = f"ua:{self.user_agent or ''}|net:{network_of(self.ip)}"
        return hashlib.sha256(identity.encode("utf-8", "replace")).hexdigest()

    @property
    def description(self) -> str:
        """What the notice names the device by: its User-Agent, printable and bounded."""
        printable = "".join(char for char in (self.user_agent or "") if char.isprintable()).strip()
        return printable[:DESCRIPTION_MAX_LENGTH] or UNKNOWN_DEVICE


def network_of(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
