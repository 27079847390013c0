"""The email worker, killed the moment a verified code's durable ``code.verified`` is to be published.

By then it has replied the verdict to the waiting request, and it has not
acked the submission: exactly the window tests/faults/test_confirm_crash.py
puts a crash in. ``os._exit`` ends the process at once, as SIGKILL would:
no clean-up, no ack, no connection closed politely. Runs one worker process
(``WORKER_PROCESSES=1``), so the patch below is in the process that consumes.
"""

from __future__ import annotations

import os
import sys

from common.messaging import consumer
from common.messaging.envelope import Outgoing
from common.messaging.messages import CodeVerified
from email_service.__main__ import main

KILLED_EXIT_CODE = 86

_publish = consumer.ChannelPublisher.publish


def _publish_or_die(self: consumer.ChannelPublisher, queue: str, message: Outgoing) -> None:
    if message.type == CodeVerified.TYPE:
        os._exit(KILLED_EXIT_CODE)
    _publish(self, queue, message)


if __name__ == "__main__":
    consumer.ChannelPublisher.publish = _publish_or_die  # type: ignore[method-assign]
    os.environ["WORKER_PROCESSES"] = "1"
    sys.exit(main([]))
