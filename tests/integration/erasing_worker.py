"""The email worker, killed half-way through forgetting an erased account's address.

It deletes the first half of the address's keys, then ends at once (``os._exit``,
as SIGKILL would: no ack, no clean-up), so the ``account.erased`` message goes
back to the queue with the other half still in Redis. Runs one worker process
(``WORKER_PROCESSES=1``), so the patch below is in the process that consumes.
"""

from __future__ import annotations

import hashlib
import os
import sys

from common.messaging.messages import Purpose
from email_service.__main__ import main
from email_service.adapters import pending_store

KILLED_EXIT_CODE = 87


def _erase_half_then_die(self: pending_store.RedisPendingCodes, email: str) -> int:
    hashed = hashlib.sha256(email.encode()).hexdigest()
    keys = [f"{self._prefix}:{kind}:{purpose}:{hashed}" for purpose in Purpose for kind in ("pending", "sent")]
    self._redis.delete(*keys[: len(keys) // 2])
    os._exit(KILLED_EXIT_CODE)


if __name__ == "__main__":
    pending_store.RedisPendingCodes.erase_address = _erase_half_then_die  # type: ignore[method-assign]
    os.environ["WORKER_PROCESSES"] = "1"
    sys.exit(main([]))
