"""``make run``: the auth service, the email worker and a mail sink that prints each mail.

Settings come from the environment and ``.env``; the sink listens on SMTP_PORT
and the API on AUTH_PORT. Ctrl-C stops everything.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from common.settings import environment
from devtools.stack import LocalStack, preflight


def main() -> int:
    env = environment()
    problems = preflight(
        env.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2F"),
        env.get("REDIS_URL", "redis://localhost:6379/0"),
    )
    if problems:
        print("\n".join(problems))
        return 1
    log_dir = Path(tempfile.mkdtemp(prefix="run-logs-"))
    stack = LocalStack(
        log_dir,
        {
            "MONGO_URI": env.get("MONGO_URI") or "mongomock://",
            "WORKER_METRICS_PORT": env.get("WORKER_METRICS_PORT", "9100"),
        },
        echo_mail=True,
        auth_port=int(env.get("AUTH_PORT", 8000)),
        smtp_port=int(env.get("SMTP_PORT", 1025)),
    )
    stack.start()
    print(f"auth service: {stack.base_url}  (docs: {stack.base_url}/docs)")
    print(f"mail sink: 127.0.0.1:{stack.sink.port}, each mail is printed here")
    print(f"service logs: {log_dir}/auth.log and {log_dir}/worker.log")
    print(f"metrics: {stack.base_url}/metrics and {stack.worker_status_url}/metrics")
    print("Ctrl-C to stop.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping:", stack.stop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
