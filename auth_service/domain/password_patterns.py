"""Passwords made of one repeated or sequential pattern (NIST SP 800-63B 5.1.1.2). Pure Python.

Refused, case-insensitively, when the whole password is:
- a sequence of runs of at least three characters, each run one character
  repeated (``aaaaaaaa``, eight spaces), a step up or down the digits or the
  alphabet (``12345678``, ``abcdefgh``, ``zyxwvuts``), or a step along one
  keyboard row (``qwertyui``, ``zxcvbnm,./``): ``1234abcd`` and
  ``abc123xyz`` are such sequences too;
- or a shorter unit repeated: any unit of up to four characters (``abababab``,
  ``123123123``), or a longer one that is itself refused here or common
  (``qwertyqwerty``, ``passwordpassword``).
A password that merely contains such a run (``correct horse abc``) is not
refused: only patterns that cover it whole leave it as weak as the pattern.
"""

from __future__ import annotations

import functools
from itertools import pairwise

from auth_service.domain.common_passwords import is_common

MIN_RUN = 3
SHORT_UNIT = 4
# Orders in which the next character is "the obvious next one": digits, the
# alphabet, and each row of a US keyboard, unshifted and shifted.
SEQUENCES = (
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
    "`1234567890-=",
    "~!@#$%^&*()_+",
    "qwertyuiop[]\\",
    "qwertyuiop{}|",
    "asdfghjkl;'",
    'asdfghjkl:"',
    "zxcvbnm,./",
    "zxcvbnm<>?",
)


def is_repeated_or_sequential(password: str) -> bool:
    text = password.lower()
    return _covered_by_runs(text) or _repeats_a_weak_unit(text)


@functools.cache
def _steps() -> dict[tuple[str, str], frozenset[int]]:
    """For each pair of characters that follow each other in some sequence, the steps (+1, -1) they make."""
    steps: dict[tuple[str, str], set[int]] = {}
    for sequence in SEQUENCES:
        for first, second in pairwise(sequence):
            steps.setdefault((first, second), set()).add(1)
            steps.setdefault((second, first), set()).add(-1)
    return {pair: frozenset(found) for pair, found in steps.items()}


def _is_run(segment: str) -> bool:
    if len(segment) < MIN_RUN:
        return False
    if len(set(segment)) == 1:
        return True
    pairs = list(pairwise(segment))
    shared = _steps().get(pairs[0], frozenset())
    for pair in pairs[1:]:
        shared &= _steps().get(pair, frozenset())
        if not shared:
            return False
    # Pairs can each step +1 in a different sequence; a run stays inside one.
    return any(_in_one_sequence(segment, step) for step in shared)


def _in_one_sequence(segment: str, step: int) -> bool:
    for sequence in SEQUENCES:
        if all(char in sequence for char in segment):
            positions = [sequence.index(char) for char in segment]
            if all(b - a == step for a, b in pairwise(positions)):
                return True
    return False


def _covered_by_runs(text: str) -> bool:
    """Can the whole text be cut into runs? (Dynamic programming over the cut points.)"""
    covered = [True] + [False] * len(text)
    for end in range(MIN_RUN, len(text) + 1):
        covered[end] = any(covered[start] and _is_run(text[start:end]) for start in range(0, end - MIN_RUN + 1))
    return bool(text) and covered[len(text)]


def _repeats_a_weak_unit(text: str) -> bool:
    for period in range(1, len(text) // 2 + 1):
        if all(text[index] == text[index - period] for index in range(period, len(text))):
            unit = text[:period]
            if period <= SHORT_UNIT or _covered_by_runs(unit) or is_common(unit):
                return True
    return False
