"""What importing the services' dependencies brings into every process, checked in fresh interpreters.

Each module named here was measured as a cost a process does not use (docs/decisions/redis-below-7-2.md,
lazy-http-clients.md): a change or a dependency release that starts importing it again fails here instead
of growing every process unseen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LOADED = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(sys.modules)))
"""

BUILT = """
import json, sys
from auth_service import bootstrap
from auth_service.config import Settings
bootstrap.build(Settings.from_env())
print(json.dumps(sorted(sys.modules)))
"""

AUTH_ENV = {
    "MONGO_URI": "mongomock://",
    "APP_ENV": "development",
    "JWT_SECRET": "import-costs-jwt-secret-0123456789abcdef",
    "CODE_HMAC_KEY": "import-costs-code-key-0123456789abcdef",
}


def loaded(script: str, *args: str, env: dict[str, str] | None = None) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def loaded_after(*imports: str) -> set[str]:
    return loaded(LOADED, *imports)


@pytest.mark.parametrize("entry_point", ["auth_service.__main__", "email_service.__main__"])
def test_no_service_imports_the_opentelemetry_metrics_sdk(entry_point):
    # Traces are exported through the tracing SDK; no service records OpenTelemetry metrics
    # (Prometheus serves them). redis-py 7.2 and later import the metrics SDK whenever it is installed.
    loaded = loaded_after(entry_point, "redis")
    assert "redis" in loaded and "opentelemetry.sdk.trace" in loaded
    assert "opentelemetry.sdk.metrics" not in loaded


def test_the_benchmark_auth_process_brings_no_benchmark_tooling():
    # bench.indexed_mongo runs the auth service in the benchmark; what it imports beyond the service is
    # the MongoDB stand-in alone, not the stack's tooling (its mail sink, pika's other adapters).
    service = loaded_after("auth_service.__main__", "mongomock")
    extra = loaded_after("bench.indexed_mongo") - service
    tooling = ("devtools", "aiosmtpd", "pika.adapters.asyncio", "pika.adapters.twisted", "urllib.request")
    assert {"bench", "bench.indexed_mongo"} <= extra
    assert [name for name in extra if name.startswith(tooling)] == []


def test_auth_loads_no_http_client_until_a_check_or_a_webhook_needs_one():
    # The defaults: the webhook dispatcher runs in the API process, no CAPTCHA, no breached-password check.
    assert "urllib3" not in loaded(BUILT, env={**AUTH_ENV, "WEBHOOK_DISPATCHER": "true"})
    with_checks = {
        **AUTH_ENV,
        "PWNED_PASSWORDS_URL": "https://api.pwnedpasswords.com/range/",
        "CAPTCHA_PROVIDER": "turnstile",
        "CAPTCHA_SECRET": "import-costs-captcha-secret",
    }
    built = loaded(BUILT, env=with_checks)
    assert {"auth_service.adapters.captcha", "auth_service.adapters.pwned_passwords", "urllib3"} <= built
