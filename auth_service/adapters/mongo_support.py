"""Reading dates back from MongoDB."""

from __future__ import annotations

from datetime import UTC, datetime


def aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:  # BSON dates come back naive, in UTC
        return moment.replace(tzinfo=UTC)
    return moment
