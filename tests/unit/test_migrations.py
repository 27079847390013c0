"""``python -m auth_service migrate``'s work: every index, and the data migrations, applied again changing nothing."""

from datetime import UTC, datetime

import mongomock

from auth_service.adapters import mongo_schema


def indexes(database) -> dict[str, set[str]]:
    return {name: set(database[name].index_information()) for name in database.list_collection_names()}


def test_every_index_is_created_and_a_second_run_changes_nothing():
    database = mongomock.MongoClient()["auth"]
    database["users"].insert_one({"_id": "old", "email": "a@example.com", "status": "pending_verification"})
    now = datetime.now(UTC)
    mongo_schema.migrate(database, unverified_ttl_seconds=86400, now=now, in_process=False)
    created = indexes(database)
    for index in mongo_schema.INDEXES:
        assert index.name in created[index.collection], index
    stamped = database["users"].find_one({"_id": "old"})["expires_at"]
    mongo_schema.migrate(database, unverified_ttl_seconds=3600, now=now, in_process=False)
    assert indexes(database) == created
    assert database["users"].find_one({"_id": "old"})["expires_at"] == stamped


def test_the_in_process_store_goes_without_the_ttl_indexes_it_would_race_on():
    database = mongomock.MongoClient()["auth"]
    mongo_schema.migrate(database, unverified_ttl_seconds=60, now=datetime.now(UTC), in_process=True)
    created = indexes(database)
    for index in mongo_schema.INDEXES:
        assert (index.name in created.get(index.collection, set())) is index.in_process, index
