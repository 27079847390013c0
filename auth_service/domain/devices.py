"""What counts as one device: the one definition that sign-in trust and new-sign-in notices use. Pure.

A device is the ``X-Device-Id`` header if the app sends one, else the
User-Agent and the network it comes from (/24 for IPv4, /64 for IPv6), so a
phone moving between addresses of one provider stays one device. Only a hash
of it is stored.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

DEVICE_ID_MAX_LENGTH = 200
USER_AGENT_MAX_LENGTH = 500
DESCRIPTION_MAX_LENGTH = 200
UNKNOWN_DEVICE = "an unknown device"
# Devices an account keeps for new-sign-in notices: the most recently used ones.
KNOWN_DEVICES_KEPT = 20


def device_identity(device_id: str | None, user_agent: str | None, ip: str | None) -> str:
    """The app's ``X-Device-Id`` if it sends one, else the User-Agent and the client's network
    (/24 for IPv4, /64 for IPv6), so that a new address from the same provider is the same device."""
    if device_id and device_id.strip():
        return "id:" + device_id.strip()[:DEVICE_ID_MAX_LENGTH]
    return f"ua:{(user_agent or '').strip()[:USER_AGENT_MAX_LENGTH]}|net:{network_of(ip)}"


def device_key(identity: str) -> str:
    """How a device is stored: a hash, so the account document spells out no User-Agent or network."""
    return hashlib.sha256(identity.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class Device:
    """A request's device as the request shows it."""

    ip: str
    user_agent: str | None = None
    device_id: str | None = None
    # What the app calls the device (``X-Device-Name``, "Ada's iPhone"): shown in the session list.
    name: str | None = None

    @property
    def identity(self) -> str:
        return device_identity(self.device_id, self.user_agent, self.ip)

    @property
    def key(self) -> str:
        return device_key(self.identity)

    @property
    def description(self) -> str:
        """What a new-sign-in notice names the device by: its User-Agent, printable and bounded."""
        printable = "".join(char for char in (self.user_agent or "") if char.isprintable()).strip()
        return printable[:DESCRIPTION_MAX_LENGTH] or UNKNOWN_DEVICE

    @property
    def label(self) -> str:
        """How the session list names the device: the app's name for it, else one read from the User-Agent."""
        return device_label(self.name, self.user_agent)


# Checked in order: "Edg/" and "OPR/" User-Agents also say "Chrome/", and Chrome's also says "Safari/".
BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def device_label(name: str | None, user_agent: str | None) -> str:
    """A readable name for a device: the app's own (printable, bounded), else "Firefox on Linux" and the
    like from the User-Agent, else the User-Agent's first product ("okhttp", "MyApp"), else unknown."""
    chosen = _printable(name)
    if chosen:
        return chosen
    agent = _printable(user_agent)
    if not agent:
        return UNKNOWN_DEVICE
    browser = next((label for marker, label in BROWSERS if marker in agent), None)
    system = next((label for marker, label in SYSTEMS if marker in agent), None)
    if browser and system:
        return f"{browser} on {system}"
    product = agent.split("/", 1)[0].split(" ", 1)[0].strip()
    if system:
        return f"{product} on {system}" if product and product != "Mozilla" else system
    return browser or product or UNKNOWN_DEVICE


def _printable(text: str | None) -> str:
    return "".join(char for char in (text or "") if char.isprintable()).strip()[:DESCRIPTION_MAX_LENGTH]


def network_of(ip: str | None) -> str:
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
