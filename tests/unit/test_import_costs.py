"""What importing the services' dependencies brings into every process, checked in fresh interpreters.

Each module named here was measured as a cost no service uses (docs/decisions/redis-below-7-2.md): a
dependency release that starts importing it again fails here instead of growing every process unseen.
"""

from __future__ import annotations

import json
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


def loaded_after(*imports: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *imports], cwd=ROOT, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return set(json.loads(done.stdout))


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
    benchmark = loaded_after("bench.indexed_mongo")
    assert benchmark - service == {"bench", "bench.indexed_mongo"}
