"""``python -m auth_service migrate``: the database's indexes and data migrations, then exit.

Compose runs it once before the service starts. With ``MONGO_URI=mongomock://`` the store lives inside the
service's own process, which applies them itself at start: there is nothing here to migrate.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

from auth_service import bootstrap
from auth_service.adapters import mongo_schema
from auth_service.config import Settings

log = logging.getLogger(__name__)


def run(settings: Settings) -> int:
    if settings.mongo_uri.startswith(bootstrap.IN_PROCESS_MONGO):
        print(
            "auth_service migrate: MONGO_URI=mongomock:// lives inside the service's own process, "
            "which applies the migrations itself at start",
            file=sys.stderr,
        )
        return 0
    database = bootstrap.mongo_database(settings)
    mongo_schema.migrate(
        database,
        unverified_ttl_seconds=settings.unverified_ttl_seconds,
        now=datetime.now(UTC),
        in_process=False,
    )
    log.info("database migrated", extra={"indexes": len(mongo_schema.INDEXES)})
    return 0
