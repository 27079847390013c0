"""What the operator's commands (``dlq``, ``migrate-queues``) share: they run on the broker's operator account."""

from __future__ import annotations

from collections.abc import Callable

import pika.exceptions

ACCESS_REFUSED = 403


def as_operator(command: str, work: Callable[[], int], out: Callable[[str], None] = print) -> int:
    """Run ``work``; a refusal by the broker is explained in a line, not a traceback."""
    try:
        return work()
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code != ACCESS_REFUSED:
            raise
        out(f"the broker refused: {error.reply_text}")
        out(f"{command} reads and writes both services' queues: run it with the operator account")
        return 1
