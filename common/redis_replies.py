"""Replies of redis-py's synchronous client, typed as what they are.

redis-py declares each command once for its synchronous and asyncio clients, so
a call on ``redis.Redis`` is typed ``Awaitable[T] | T``. On the synchronous
client, which is the only one these services use, it is never awaitable.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def reply(value: Awaitable[T] | T) -> T:
    if inspect.isawaitable(value):
        raise TypeError("an asyncio Redis client where a synchronous one is expected")
    return value
