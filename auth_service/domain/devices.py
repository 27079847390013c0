"""What counts as one device: the one definition that sign-in trust and new-sign-in notices use. Pure.

A device is the ``X-Device-Id`` header if the app sends one, else the
User-Agent and the network it comes from (/24 for IPv4, /64 for IPv6), so a
phone moving between addresses of one provider stays one device. Only a hash
of it is stored.

A notice names a device by a short label, never by its User-Agent: the
User-Agent is whatever the client wrote, and a security alarm must not carry a
thief's text ("call support at ...", a link) to the owner. The label is the
browser and the operating system as ua-parser recognises them, each printed
only if it is one of the names listed here (a parser derives some names from
the User-Agent itself), with its major version in digits; nothing else of the
User-Agent reaches it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from ua_parser import parse_os, parse_user_agent

DEVICE_ID_MAX_LENGTH = 200
USER_AGENT_MAX_LENGTH = 500
# What a notice prints when neither the browser nor the system is one it can name.
UNKNOWN_DEVICE = "unknown"
# The names a label may print: ua-parser's families for the browsers and systems people use. Any other
# family (an app's own name, or text a client made up to look like one) is not printed.
KNOWN_BROWSERS = frozenset(
    {
        "Chrome", "Chrome Mobile", "Chrome Mobile iOS", "Chrome Mobile WebView", "Chromium", "Firefox",
        "Firefox Mobile", "Firefox iOS", "Safari", "Mobile Safari", "Edge", "Edge Mobile", "Opera",
        "Opera Mobile", "Opera Mini", "Samsung Internet", "UC Browser", "Yandex Browser", "Brave",
        "Vivaldi", "IE", "IE Mobile", "Silk", "DuckDuckGo Mobile", "MiuiBrowser", "Facebook", "Instagram",
        "Electron", "okhttp", "CFNetwork",
    }
)  # fmt: skip
KNOWN_SYSTEMS = frozenset(
    {
        "Windows", "Mac OS X", "iOS", "iPadOS", "Android", "Linux", "Ubuntu", "Fedora", "Debian",
        "Chrome OS", "Windows Phone", "HarmonyOS", "FreeBSD", "OpenBSD",
    }
)  # fmt: skip
MAJOR_VERSION_DIGITS = 4
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

    @property
    def identity(self) -> str:
        return device_identity(self.device_id, self.user_agent, self.ip)

    @property
    def key(self) -> str:
        return device_key(self.identity)

    @property
    def description(self) -> str:
        """What a new-sign-in notice names the device by: the label of its User-Agent."""
        return device_label(self.user_agent)


def device_label(user_agent: str | None) -> str:
    """The browser and the system ("Chrome 120, Windows 10", "Mobile Safari 17, iOS 17", "iOS 16"), each
    only if it is a known name, with its major version; ``UNKNOWN_DEVICE`` when neither is."""
    text = (user_agent or "")[:USER_AGENT_MAX_LENGTH]
    browser = parse_user_agent(text)
    system = parse_os(text)
    parts = [
        _named(browser.family, browser.major, KNOWN_BROWSERS) if browser else None,
        _named(system.family, system.major, KNOWN_SYSTEMS) if system else None,
    ]
    return ", ".join(part for part in parts if part) or UNKNOWN_DEVICE


def _named(family: str, major: str | None, known: frozenset[str]) -> str | None:
    if family not in known:
        return None
    if major and major.isascii() and major.isdigit() and len(major) <= MAJOR_VERSION_DIGITS:
        return f"{family} {major}"
    return family


def network_of(ip: str | None) -> str:
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
