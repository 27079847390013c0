"""``make run``: the auth service, the email worker and a mail sink that prints each mail.

Settings come from the environment and ``.env``; the sink listens on SMTP_PORT
and the API on AUTH_PORT. Ctrl-C stops everything.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from auth_service.config import Settings as AuthSettings
from common.settings import SettingsError
from devtools.stack import LocalStack, environment, preflight
from email_service.config import Settings as WorkerSettings


def main() -> int:
    env = {**environment(), "APP_ENV": "development"}  # as LocalStack runs the services
    try:
        auth, worker = AuthSettings.from_env(env), WorkerSettings.from_env(env)
    except SettingsError as error:
        print(f"run: {error}", file=sys.stderr)
        return 2
    problems = preflight(worker.rabbitmq_url, worker.redis_url)
    if problems:
        print("\n".join(problems))
        return 1
    log_dir = Path(tempfile.mkdtemp(prefix="run-logs-"))
    stack = LocalStack(
        log_dir,
        {
            "MONGO_URI": env.get("MONGO_URI") or "mongomock://",
            "WORKER_METRICS_PORT": str(worker.worker_metrics_port),
        },
        echo_mail=True,
        auth_port=auth.auth_port,
        smtp_port=worker.smtp_port,
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
