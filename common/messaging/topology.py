"""Queue topology: every work queue with its retry ladder and dead-letter queue.

A work queue ``Q`` is a durable quorum queue with a delivery limit. Messages
that exceed the limit (a consumer crashing on them again and again) are
dead-lettered by the broker into ``Q.dead``. Transient failures are parked in
``Q.retry.<n>``: a queue with a fixed message TTL whose dead-letter route
leads back to ``Q``, so a retried message waits in the broker, not in a
sleeping consumer, and a short delay never queues behind a long one.
"""

from __future__ import annotations

from dataclasses import dataclass

DELIVERY_LIMIT = 10
RETRY_DELAYS_SECONDS = (2, 10, 30, 120)
DEFAULT_EXCHANGE = ""


@dataclass(frozen=True)
class WorkQueue:
    name: str

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dead"

    def retry_queue(self, attempt: int) -> str:
        """The retry queue for the given retry number (0-based), capped at the last step."""
        return self.retry_queues[min(attempt, len(RETRY_DELAYS_SECONDS) - 1)]

    @property
    def retry_queues(self) -> list[str]:
        return [f"{self.name}.retry.{delay}s" for delay in RETRY_DELAYS_SECONDS]

    @property
    def max_retries(self) -> int:
        return len(RETRY_DELAYS_SECONDS)


def _quorum(extra: dict | None = None) -> dict:
    return {"x-queue-type": "quorum", **(extra or {})}


def declare(channel, queue_names: list[str]) -> None:
    """Declare each work queue with its retry and dead-letter queues (idempotent)."""
    for name in queue_names:
        queue = WorkQueue(name)
        channel.queue_declare(queue=queue.dead_letter_queue, durable=True, arguments=_quorum())
        channel.queue_declare(
            queue=queue.name,
            durable=True,
            arguments=_quorum(
                {
                    "x-delivery-limit": DELIVERY_LIMIT,
                    "x-dead-letter-exchange": DEFAULT_EXCHANGE,
                    "x-dead-letter-routing-key": queue.dead_letter_queue,
                }
            ),
        )
        for delay, retry_queue in zip(RETRY_DELAYS_SECONDS, queue.retry_queues):
            channel.queue_declare(
                queue=retry_queue,
                durable=True,
                arguments=_quorum(
                    {
                        "x-message-ttl": delay * 1000,
                        "x-dead-letter-exchange": DEFAULT_EXCHANGE,
                        "x-dead-letter-routing-key": queue.name,
                    }
                ),
            )
