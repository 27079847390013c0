"""What counts as one device: the one definition that sign-in trust (and new-sign-in notices) use. Pure."""

from __future__ import annotations

import hashlib
import ipaddress

DEVICE_ID_MAX_LENGTH = 200
USER_AGENT_MAX_LENGTH = 500


def device_identity(device_id: str | None, user_agent: str | None, ip: str | None) -> str:
    """The app's ``X-Device-Id`` if it sends one, else the User-Agent and the client's network
    (/24 for IPv4, /64 for IPv6), so that a new address from the same provider is the same device."""
    if device_id and device_id.strip():
        return "id:" + device_id.strip()[:DEVICE_ID_MAX_LENGTH]
    return f"ua:{(user_agent or '').strip()[:USER_AGENT_MAX_LENGTH]}|net:{_network(ip)}"


def device_key(identity: str) -> str:
    """How a device is stored: a hash, so the account document spells out no User-Agent or network."""
    return hashlib.sha256(identity.encode("utf-8", "replace")).hexdigest()


def _network(ip: str | None) -> str:
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
