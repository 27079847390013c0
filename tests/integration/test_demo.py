"""``make demo`` is the first command a newcomer types: it must walk the whole flow."""

import subprocess
import sys

from devtools.stack import ROOT
from tests.integration.conftest import RABBITMQ_URL, REDIS_URL


def test_the_demo_walks_the_whole_flow_and_stops_cleanly():
    env = {"PATH": "/usr/bin:/bin", "RABBITMQ_URL": RABBITMQ_URL, "REDIS_URL": REDIS_URL, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "devtools.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("1. Register", "2. The email", "4. Confirm", "5. Log in", "6. Who am I?"):
        assert step in result.stdout
    assert "-> 201" in result.stdout and "-> 403" in result.stdout
    assert "exit codes: auth 0, worker 0" in result.stdout
    assert "The whole flow worked." in result.stdout
