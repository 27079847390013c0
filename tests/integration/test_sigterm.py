"""Both processes stop cleanly on SIGTERM: exit 0 within 10 seconds, measured on real servers."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from devtools.stack import LocalStack, delete_run, unique_names
from tests.integration.local_servers import servers_or_fail

pytestmark = pytest.mark.integration

STOP_WITHIN_SECONDS = 10.0


def test_sigterm_stops_both_services_with_exit_0_within_10_seconds(tmp_path, unique_email):
    servers = servers_or_fail()
    names = unique_names("sigterm")
    stack = LocalStack(tmp_path, {**servers, **names, "BCRYPT_ROUNDS": "4"})
    try:
        stack.start()
        email = unique_email("sigterm")
        assert stack.call("POST", "/auth/register", {"email": email, "password": "correct horse battery"})[0] == 201
        assert stack.sink.wait_for(email, timeout=15)

        processes = {"auth": stack.auth.process, "worker": stack.worker.process}
        started = time.monotonic()
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        took = {}
        for name, process in processes.items():
            try:
                code = process.wait(timeout=max(0.0, STOP_WITHIN_SECONDS - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} still running {STOP_WITHIN_SECONDS}s after SIGTERM")
            took[name] = time.monotonic() - started
            assert code == 0, f"{name} exited {code}"
        print(f"stopped after SIGTERM: auth {took['auth']:.2f}s, worker {took['worker']:.2f}s")
        assert "auth service stopped" in stack.auth.log_text()
        assert "email worker stopped" in stack.worker.log_text()
    finally:
        stack.stop()
        delete_run(servers["RABBITMQ_URL"], names, redis_url=servers["REDIS_URL"])
