"""Queue topology: every work queue with its retry ladder and dead-letter queue.

A work queue ``Q`` is a durable quorum queue with a delivery limit. Messages
that exceed the limit (a consumer crashing on them again and again) are
dead-lettered by the broker into ``Q.dead``. Transient failures are parked in
``Q.retry.<n>``: a queue with a fixed message TTL whose dead-letter route
leads back to ``Q``, so a retried message waits in the broker, not in a
sleeping consumer, and a short delay never queues behind a long one.

The delays are a setting (``RETRY_DELAYS_SECONDS``) read by both services.
A retry queue's name carries its delay, so two ladders can never clash on
queue arguments; both services should still use the same one, since each
consumer parks messages on its own ladder.
"""

from __future__ import annotations

from dataclasses import dataclass

DELIVERY_LIMIT = 10
RETRY_DELAYS_SECONDS = (2, 10, 30, 120)
DEFAULT_EXCHANGE = ""


@dataclass(frozen=True)
class WorkQueue:
    name: str
    retry_delays: tuple[int, ...] = RETRY_DELAYS_SECONDS

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dead"

    def retry_queue(self, attempt: int) -> str:
        """The retry queue for the given retry number (0-based), capped at the last step."""
        return self.retry_queues[min(attempt, len(self.retry_delays) - 1)]

    @property
    def retry_queues(self) -> list[str]:
        return [f"{self.name}.retry.{delay}s" for delay in self.retry_delays]

    @property
    def max_retries(self) -> int:
        return len(self.retry_delays)


def _quorum(extra: dict | None = None) -> dict:
    return {"x-queue-type": "quorum", **(extra or {})}


def declare(channel, queue_names: list[str], retry_delays: tuple[int, ...] = RETRY_DELAYS_SECONDS) -> None:
    """Declare each work queue with its retry and dead-letter queues (idempotent)."""
    for name in queue_names:
        queue = WorkQueue(name, retry_delays)
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
        for delay, retry_queue in zip(queue.retry_delays, queue.retry_queues):
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
