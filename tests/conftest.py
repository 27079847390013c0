import uuid

import pytest


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique_email():
    def make(prefix: str = "user") -> str:
        return f"{unique(prefix)}@example.com"

    return make


@pytest.fixture
def spans():
    """The spans this process ends during the test (the SDK's in-memory exporter, tests/tracing.py)."""
    from tests.tracing import exporter

    recorded = exporter()
    recorded.clear()
    recorded.recording = True
    yield recorded
    recorded.recording = False
    recorded.clear()


NOTES = pytest.StashKey[list[str]]()


@pytest.fixture
def note(request):
    """Print a line under "test notes" at the end of the run: where an artefact is, what was measured."""

    def add(line: str) -> None:
        request.config.stash.setdefault(NOTES, []).append(f"{request.node.name}: {line}")

    return add


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    notes = config.stash.get(NOTES, [])
    if notes:
        terminalreporter.section("test notes")
        for line in notes:
            terminalreporter.write_line(line)
