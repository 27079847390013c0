"""``make demo``: bring the system up on this machine and walk one user through it.

register -> the code email -> confirm -> login -> /auth/me, printing each step,
then stop what it started. Uses MongoDB from MONGO_URI if set, else the
in-process store; RabbitMQ and Redis from RABBITMQ_URL and REDIS_URL.
"""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from pathlib import Path

from common.settings import ServiceSettings, SettingsError
from devtools.stack import LocalStack, delete_run, environment, http_json, preflight, unique_names

RULE = "-" * 72


def show(step: str, method: str, path: str, body: dict | None, answer) -> None:
    status, _, response = answer
    print(f"\n{RULE}\n{step}\n  {method} {path}" + (f"  {json.dumps(body)}" if body else ""))
    print(f"  -> {status} {json.dumps(response, indent=2).replace(chr(10), chr(10) + '     ')}")


def show_operations(stack: LocalStack, request_id: str, log_dir: Path) -> None:
    """What an operator sees: the registration's log lines in both services, and the metrics."""
    print(f"\n{RULE}\n7. The registration in the logs (request id {request_id}), then the metrics\n")
    for name in ("auth.log", "worker.log"):
        for line in (log_dir / name).read_text().splitlines():
            if f'"request_id": "{request_id}"' in line:
                print(f"   {name}: {line}")
    for url in [f"{stack.base_url}/metrics", *(f"{worker}/metrics" for worker in stack.worker_status_urls)]:
        print(f"\n   GET {url}")
        _, _, text = http_json("GET", url)
        for line in text.splitlines():
            if line.startswith(DEMO_METRICS) and not line.endswith(" 0.0"):
                print(f"   {line}")


DEMO_METRICS = (
    "http_requests_total",
    "messages_consumed_total",
    "outbox_pending",
    "codes_issued_total",
    "code_verdicts_total",
    "emails_sent_total",
    "emails_failed_total",
)


class DemoStack:
    """The demo's system: checks the servers, starts the services, and stops them and deletes the queues."""

    def __init__(self, prefix: str = "demo"):
        env = environment()
        try:
            shared = ServiceSettings.from_env(env)
        except SettingsError as error:
            raise SystemExit(f"{prefix}: {error}") from None
        self.rabbitmq_url, self.redis_url = shared.rabbitmq_url, shared.redis_url
        self.mongo_uri = env.get("MONGO_URI") or "mongomock://"
        self.names = unique_names(prefix)
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-logs-"))
        self.stack: LocalStack | None = None
        self.exit_codes: dict[str, int | None] = {}

    def start(self) -> LocalStack | None:
        problems = preflight(self.rabbitmq_url, self.redis_url)
        if problems:
            print("The demo needs RabbitMQ and Redis running on this machine:\n")
            print("\n".join(f"  - {problem}" for problem in problems))
            return None
        if self.mongo_uri.startswith("mongomock://"):
            print("MongoDB: MONGO_URI is not set, so users live in an in-process store (mongomock://) for this demo.")
        else:
            print(f"MongoDB: using MONGO_URI={self.mongo_uri}")
        print(f"RabbitMQ: {self.rabbitmq_url.split('@')[-1]}   Redis: {self.redis_url}")
        overrides = {
            **self.names,
            "MONGO_URI": self.mongo_uri,
            "RABBITMQ_URL": self.rabbitmq_url,
            "REDIS_URL": self.redis_url,
        }
        self.stack = LocalStack(self.log_dir, overrides)
        print(f"Starting the auth service, the email worker and a mail sink (logs in {self.log_dir}) ...")
        self.stack.start()
        print(f"Auth service ready at {self.stack.base_url} (API docs at {self.stack.base_url}/docs)")
        return self.stack

    def stop(self) -> None:
        if self.stack is not None:
            self.exit_codes = self.stack.stop()
            delete_run(self.rabbitmq_url, self.names, redis_url=self.redis_url)

    def report(self, ok: bool, success: str) -> int:
        codes = self.exit_codes
        print(f"\n{RULE}\nStopped the services (exit codes: auth {codes.get('auth')}, worker {codes.get('worker')}).")
        print(success if ok else "Something did not work; see the logs.")
        return 0 if ok and codes == {"auth": 0, "worker": 0} else 1


def shortened(body):
    """An answer with its tokens cut short, for printing."""
    if not isinstance(body, dict):
        return body
    return {
        key: f"{value[:24]}..." if key in TOKEN_FIELDS and isinstance(value, str) else value
        for key, value in body.items()
    }


TOKEN_FIELDS = ("access_token", "refresh_token")


def main() -> int:
    demo = DemoStack()
    email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
    password = "correct horse battery staple"
    ok = False
    try:
        stack = demo.start()
        if stack is None:
            return 1

        body = {"email": email, "password": password, "name": "Ada"}
        registered = stack.call("POST", "/auth/register", body)
        show("1. Register", "POST", "/auth/register", {**body, "password": "***"}, registered)

        mails = stack.sink.wait_for(email, timeout=15)
        if not mails:
            print("No email arrived within 15 s; see the logs above.")
            return 1
        mail = mails[0]
        print(f"\n{RULE}\n2. The email the worker sent to {mail.recipient} (subject: {mail.subject})\n")
        print("   " + mail.text.strip().replace("\n", "\n   "))
        code = mail.code
        if code is None:
            print("The email holds no 6-digit code.")
            return 1

        body = {"email": email, "password": password}
        show(
            "3. Log in before confirming",
            "POST",
            "/auth/login",
            {**body, "password": "***"},
            stack.call("POST", "/auth/login", body),
        )

        body = {"email": email, "code": code}
        show(
            "4. Confirm with the emailed code", "POST", "/auth/confirm", body, stack.call("POST", "/auth/confirm", body)
        )

        body = {"email": email, "password": password}
        status, headers, token_body = stack.call("POST", "/auth/login", body)
        show("5. Log in", "POST", "/auth/login", {**body, "password": "***"}, (status, headers, shortened(token_body)))

        token = token_body.get("access_token", "")
        show(
            "6. Who am I?",
            "GET",
            "/auth/me",
            None,
            stack.call("GET", "/auth/me", None, {"Authorization": f"Bearer {token}"}),
        )
        ok = status == 200
        show_operations(stack, registered[1].get("X-Request-Id", ""), demo.log_dir)
    finally:
        demo.stop()
    return demo.report(ok, "The whole flow worked.")


if __name__ == "__main__":
    sys.exit(main())
