"""``make demo-lifecycle`` walks an account's whole life on the real processes and stops what it started."""

import subprocess
import sys

from devtools.stack import ROOT
from tests.integration.conftest import RABBITMQ_URL, REDIS_URL


def test_the_lifecycle_demo_walks_every_flow_and_stops_cleanly():
    env = {"PATH": "/usr/bin:/bin", "RABBITMQ_URL": RABBITMQ_URL, "REDIS_URL": REDIS_URL, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "devtools.demo_lifecycle"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for step in (
        "Register",
        "Refresh the pair",
        "Reset it with the emailed code",
        "Change the password",
        "Change the email address",
        "Confirm the new address",
        "Log in with the new address",
        "Sign in with the emailed code",
        "Turn the emailed second factor on",
        "Finish the login with the challenge and the code",
        "Log in from the phone again: trusted, no code",
        "Turn the second factor off",
        "Log out",
    ):
        assert step in result.stdout
    for subject in (
        "Reset your password",
        "Confirm your new email address",
        "was asked for",
        "was changed",
        "Your sign-in code",
        "Sign-in codes were turned on",
        "Sign-in codes were turned off",
    ):
        assert subject in result.stdout
    assert "-> 204" in result.stdout
    assert '"mfa_required": true' in result.stdout
    assert "correct horse battery staple" not in result.stdout  # passwords are starred
    assert "exit codes: auth 0, worker 0" in result.stdout
    assert "The account's whole life worked." in result.stdout
