"""What a notice may print of what auth tells about an account. Pure Python, no I/O."""

from __future__ import annotations

import re

# Auth names a device by a label of known browser and system names and version digits
# ("Chrome 120, Windows 10"). Anything else (an event from an older auth that carried the
# User-Agent as sent, or one forged on the broker) is not printed: no text a client wrote, and
# nothing a mail client could turn into a link, reaches the owner's security notice.
DEVICE_LABEL = re.compile(r"\A[A-Za-z0-9 ,]{1,80}\Z")
UNKNOWN_DEVICE = "unknown"


def printable_device(label: str) -> str | None:
    """The device label to print, or None to print that the device is unknown."""
    if label == UNKNOWN_DEVICE or not DEVICE_LABEL.match(label):
        return None
    return label
