"""What auth's broker link costs per publish: request threads publishing through ``RabbitMessageBus``.

``--threads`` request threads each publish ``--messages`` code requests (persistent, to the quorum queue
``ACCOUNT_CREATION_QUEUE`` as registrations do) through one link, each waiting for its publisher
confirm, as ``Outbox.deliver`` does; on this machine's RabbitMQ, on queue names of its own, removed
at the end. Prints one JSON line per repetition: publishes/s, this process's CPU per publish
(the link thread's and the publishing threads'), and the confirm wait's p50 and p99.

    make bench-link
    python -m bench.link_publishes --threads 8 --messages 250 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid

from auth_service.adapters.rabbitmq import RabbitMessageBus
from bench.stats import percentile
from bench.workload import code_request, declare_worker_queues, run_topology
from devtools.stack import delete_run, unique_names


def run(url: str, threads: int, messages: int) -> dict:
    names = unique_names("bench-link")
    routes = run_topology(names)
    bus = RabbitMessageBus(url, routes, max_waiting_replies=2)
    try:
        declare_worker_queues(url, routes)  # the code requests' queue is the worker's to declare
        bus.start()
        if not bus.ready.wait(15):
            raise RuntimeError("the broker link did not come up")
        waits: list[float] = []
        failures: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(threads + 1)

        def requests() -> None:
            mine = []
            start.wait()
            try:
                for index in range(messages):
                    message = code_request(f"link{index}.{uuid.uuid4().hex[:8]}@example.com", "Ada")
                    sent = time.perf_counter()
                    bus.publish(names["ACCOUNT_CREATION_QUEUE"], message, timeout=10)
                    mine.append(time.perf_counter() - sent)
            except BaseException as error:  # named below, once every thread has ended
                with lock:
                    failures.append(error)
            with lock:
                waits.extend(mine)

        workers = [threading.Thread(target=requests) for _ in range(threads)]
        for worker in workers:
            worker.start()
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        start.wait()
        for worker in workers:
            worker.join()
        cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
        if failures:
            raise RuntimeError(f"{len(failures)} request threads failed, the first with {failures[0]!r}")
    finally:
        if bus.is_alive():
            bus.stop()
            bus.join(10)
        delete_run(url, names)
    count = threads * messages
    return {
        "publishes": count,
        "publishes_per_second": round(count / wall),
        "cpu_us_per_publish": round(1e6 * cpu / count),
        "wait_ms_p50": round(1000 * statistics.median(waits), 3),
        "wait_ms_p99": round(1000 * percentile(waits, 0.99), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=8, help="request threads publishing at once (8)")
    parser.add_argument("--messages", type=int, default=250, help="publishes per thread (250)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    options = parser.parse_args()
    url = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    for _ in range(options.reps):
        print(json.dumps({"threads": options.threads, **run(url, options.threads, options.messages)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
