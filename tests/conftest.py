import uuid

import pytest


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique_email():
    def make(prefix: str = "user") -> str:
        return f"{unique(prefix)}@example.com"

    return make
