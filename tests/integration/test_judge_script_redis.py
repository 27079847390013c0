"""The ``judge_attempt.lua`` script on this machine's Redis, with the tests that run it on fakeredis.

fakeredis runs the script in Lua 5.1 as Redis does, but not in Redis: the same tests here show that
the real server reads the record, compares the times and writes the verdict as the spec says. Their
keys carry a prefix of their own and are deleted after each test (the ``store`` fixture).
"""

from __future__ import annotations

import pytest
import redis

from tests.integration.conftest import REDIS_URL
from tests.unit.test_judge_script import (  # noqa: F401  (collected here, on the client below)
    store,
    test_the_script_compares_awkward_times_as_python_does,
    test_the_script_judges_every_record_as_judge_attempt_does,
    test_the_script_returns_and_remembers_any_user_id,
    test_the_scripts_times_are_the_doubles_python_wrote,
)


@pytest.fixture
def client():
    real = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=5)
    yield real
    real.close()
