"""Cursors of the admin API's lists. Pure Python, no I/O.

A page is a keyset: the next one starts after the last entry's sort key, so a
page costs one index range whatever its depth (no skip). The cursor is that
key, opaque to the client (base64url of a JSON list); one that does not decode
to the expected shape is the client's error (422), never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json

CURSOR_MAX_LENGTH = 1024
DEFAULT_PAGE = 50
MAX_PAGE = 200


class BadCursor(ValueError):
    """Not a cursor this API handed out."""


def encode_cursor(*parts: str) -> str:
    raw = json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> tuple[str, ...]:
    """The ``size`` strings a cursor holds; ``BadCursor`` for anything else."""
    if len(cursor) > CURSOR_MAX_LENGTH:
        raise BadCursor("The cursor is too long.")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("The cursor is not one this API handed out.") from None
    if not isinstance(parts, list) or len(parts) != size or not all(isinstance(part, str) for part in parts):
        raise BadCursor("The cursor is not one this API handed out.")
    return tuple(parts)


def prefix_range(prefix: str) -> tuple[str, str] | None:
    """[low, high) holding exactly the strings that start with ``prefix`` (None: every string): an anchored
    range an index answers, as MongoDB turns ``/^prefix/`` into one."""
    if not prefix:
        return None
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)
