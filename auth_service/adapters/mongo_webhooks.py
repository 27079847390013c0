"""Webhook endpoints and their deliveries in MongoDB.

An endpoint's secrets are sealed (AES-GCM under a key derived from JWT_SECRET, as the signing keys
are), the endpoint's id their associated data. A delivery is one event for one endpoint, keyed by
both (``delivery_id``), so an event handed over twice keeps one delivery; its attempts are pushed
onto it. An attempt is made by whoever claims the delivery: the claim is one atomic update with a
lease, so two dispatchers never send one attempt twice, and a dispatcher that died mid-attempt
leaves a lease that runs out for another to take over. The indexes are in mongo_schema.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pymongo
from pymongo import ReturnDocument

from auth_service.adapters.mongo_support import aware
from auth_service.adapters.serialized import SerializedWrites
from auth_service.domain.sealed_keys import KeySealer
from auth_service.domain.webhooks import (
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    Endpoint,
    Secret,
    Subscription,
)

ENDPOINTS = "webhook_endpoints"
DELIVERIES = "webhook_deliveries"


class MongoWebhooks:
    def __init__(self, database, sealer: KeySealer, serialize_writes: bool = False):
        self._endpoints = database[ENDPOINTS]
        self._deliveries = database[DELIVERIES]
        self._sealer = sealer
        self._locked = SerializedWrites(serialize_writes)

    # Endpoints

    def add_endpoint(self, endpoint: Endpoint) -> None:
        self._locked(self._endpoints.insert_one, self._endpoint_document(endpoint))

    def endpoints(self) -> list[Endpoint]:
        return [self._endpoint(document) for document in self._endpoints.find({}).sort("created_at", 1)]

    def subscriptions(self) -> list[Subscription]:
        """The enabled endpoints' patterns, read for every event: without their secrets, which stay sealed."""
        documents = self._endpoints.find({"enabled": True}, {"events": 1})
        return [Subscription(document["_id"], tuple(document["events"])) for document in documents]

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        document = self._endpoints.find_one({"_id": endpoint_id})
        return None if document is None else self._endpoint(document)

    def remove_endpoint(self, endpoint_id: str) -> bool:
        removed = self._locked(self._endpoints.delete_one, {"_id": endpoint_id}).deleted_count == 1
        if removed:
            self._locked(self._deliveries.delete_many, {"endpoint_id": endpoint_id})
        return removed

    def replace_secrets(self, endpoint: Endpoint) -> bool:
        sealed = [self._sealed(endpoint.id, secret) for secret in endpoint.secrets]
        result = self._locked(self._endpoints.update_one, {"_id": endpoint.id}, {"$set": {"secrets": sealed}})
        return result.matched_count == 1

    def record_success(self, endpoint_id: str) -> None:
        self._locked(
            self._endpoints.update_one,
            {"_id": endpoint_id, "failing_since": {"$ne": None}},
            {"$set": {"failing_since": None}},
        )

    def record_failure(self, endpoint_id: str, now: datetime) -> datetime | None:
        """Since when the endpoint has been failing (now, if this is its first failure since a success)."""
        self._locked(
            self._endpoints.update_one, {"_id": endpoint_id, "failing_since": None}, {"$set": {"failing_since": now}}
        )
        document = self._endpoints.find_one({"_id": endpoint_id}, {"failing_since": 1})
        return None if document is None else aware(document.get("failing_since"))

    def disable(self, endpoint_id: str, now: datetime) -> bool:
        """True if this call disabled it (another dispatcher may have, first)."""
        result = self._locked(
            self._endpoints.update_one,
            {"_id": endpoint_id, "enabled": True},
            {"$set": {"enabled": False, "disabled_at": now}},
        )
        return result.modified_count == 1

    def enable(self, endpoint_id: str) -> bool:
        result = self._locked(
            self._endpoints.update_one,
            {"_id": endpoint_id},
            {"$set": {"enabled": True, "disabled_at": None, "failing_since": None}},
        )
        return result.matched_count == 1

    def failing_since(self) -> dict[str, datetime]:
        """Each enabled endpoint that has failed since its last success, with since when."""
        documents = self._endpoints.find({"enabled": True, "failing_since": {"$ne": None}}, {"failing_since": 1})
        return {document["_id"]: aware(document["failing_since"]) for document in documents}

    # Deliveries

    def add_delivery(self, delivery: Delivery) -> bool:
        """False if the delivery was there already (the event was handed over before)."""
        document = {
            "endpoint_id": delivery.endpoint_id,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "body": delivery.body,
            "created_at": delivery.created_at,
            "status": delivery.status.value,
            "attempts": [],
            "next_attempt_at": delivery.created_at,
            "lease_until": None,
            "trace_headers": delivery.trace_headers,
        }
        result = self._locked(
            self._deliveries.update_one, {"_id": delivery.id}, {"$setOnInsert": document}, upsert=True
        )
        return result.upserted_id is not None

    def delivery(self, delivery_id: str) -> Delivery | None:
        document = self._deliveries.find_one({"_id": delivery_id})
        return None if document is None else _delivery(document)

    def claim(self, delivery_id: str, now: datetime, lease: timedelta) -> Delivery | None:
        """The delivery, leased to the caller for one attempt, if it is due and nobody holds it."""
        document = self._locked(
            self._deliveries.find_one_and_update,
            {
                "_id": delivery_id,
                "status": DeliveryStatus.PENDING.value,
                "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}],
            },
            {"$set": {"lease_until": now + lease}},
            return_document=ReturnDocument.AFTER,
        )
        return None if document is None else _delivery(document)

    def finish_attempt(
        self, delivery_id: str, attempt: Attempt, status: DeliveryStatus, next_attempt_at: datetime | None
    ) -> None:
        self._locked(
            self._deliveries.update_one,
            {"_id": delivery_id},
            {
                "$push": {"attempts": _attempt_document(attempt)},
                "$set": {"status": status.value, "next_attempt_at": next_attempt_at, "lease_until": None},
            },
        )

    def close(self, delivery_id: str, status: DeliveryStatus) -> None:
        """End a delivery without an attempt (its endpoint is gone or disabled)."""
        self._locked(
            self._deliveries.update_one,
            {"_id": delivery_id},
            {"$set": {"status": status.value, "next_attempt_at": None, "lease_until": None}},
        )

    def make_due(self, delivery_id: str, failed_attempts: int) -> bool:
        """A scheduled retry came due: the delivery waits for an attempt again, if it is still the retry
        of that attempt (a late or repeated timer message changes nothing)."""
        result = self._locked(
            self._deliveries.update_one,
            {"_id": delivery_id, "status": DeliveryStatus.RETRYING.value, "attempts": {"$size": failed_attempts}},
            {"$set": {"status": DeliveryStatus.PENDING.value}},
        )
        return result.modified_count == 1

    def retry_by_hand(self, delivery_id: str, endpoint_id: str, now: datetime) -> bool:
        """The delivery is due again at once, whatever became of it; False if it is due already (or unknown)."""
        result = self._locked(
            self._deliveries.update_one,
            {"_id": delivery_id, "endpoint_id": endpoint_id, "status": {"$ne": DeliveryStatus.PENDING.value}},
            {"$set": {"status": DeliveryStatus.PENDING.value, "next_attempt_at": now, "lease_until": None}},
        )
        return result.modified_count == 1

    def deliveries(self, endpoint_id: str, status: DeliveryStatus | None, limit: int) -> list[Delivery]:
        query: dict[str, Any] = {"endpoint_id": endpoint_id}
        if status is not None:
            query["status"] = status.value
        documents = self._deliveries.find(query).sort("created_at", pymongo.DESCENDING).limit(limit)
        return [_delivery(document) for document in documents]

    def stranded(self, now: datetime, overdue_before: datetime, limit: int) -> list[tuple[str, str]]:
        """(delivery, endpoint) ids of deliveries nobody is working on: due and unleased (their
        dispatcher died before or during the attempt), or scheduled retries whose timer message is
        long overdue (lost). A sweep hands them to the lanes; the claim keeps it to one attempt."""
        query = {
            "$or": [
                {
                    "status": DeliveryStatus.PENDING.value,
                    "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}],
                },
                {"status": DeliveryStatus.RETRYING.value, "next_attempt_at": {"$lt": overdue_before}},
            ]
        }
        documents = self._deliveries.find(query, {"endpoint_id": 1, "status": 1}).limit(limit)
        found = []
        for document in documents:
            if document["status"] == DeliveryStatus.RETRYING.value:
                self._locked(
                    self._deliveries.update_one,
                    {"_id": document["_id"], "status": DeliveryStatus.RETRYING.value},
                    {"$set": {"status": DeliveryStatus.PENDING.value}},
                )
            found.append((document["_id"], document["endpoint_id"]))
        return found

    def _endpoint_document(self, endpoint: Endpoint) -> dict:
        return {
            "_id": endpoint.id,
            "url": endpoint.url,
            "events": list(endpoint.events),
            "description": endpoint.description,
            "secrets": [self._sealed(endpoint.id, secret) for secret in endpoint.secrets],
            "created_at": endpoint.created_at,
            "enabled": endpoint.enabled,
            "disabled_at": endpoint.disabled_at,
            "failing_since": endpoint.failing_since,
        }

    def _sealed(self, endpoint_id: str, secret: Secret) -> dict:
        return {"sealed": self._sealer.seal(endpoint_id, {"secret": secret.value}), "expires_at": secret.expires_at}

    def _endpoint(self, document: dict) -> Endpoint:
        endpoint_id = document["_id"]
        secrets = tuple(
            Secret(self._sealer.open(endpoint_id, sealed["sealed"])["secret"], aware(sealed.get("expires_at")))
            for sealed in document.get("secrets", [])
        )
        return Endpoint(
            id=endpoint_id,
            url=document["url"],
            events=tuple(document["events"]),
            secrets=secrets,
            created_at=aware(document["created_at"]),
            description=document.get("description"),
            enabled=document.get("enabled", True),
            disabled_at=aware(document.get("disabled_at")),
            failing_since=aware(document.get("failing_since")),
        )


def _attempt_document(attempt: Attempt) -> dict:
    return {
        "at": attempt.at,
        "outcome": attempt.outcome.value,
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "error": attempt.error,
    }


def _delivery(document: dict) -> Delivery:
    return Delivery(
        id=document["_id"],
        endpoint_id=document["endpoint_id"],
        event_id=document["event_id"],
        event_type=document["event_type"],
        body=document["body"],
        created_at=aware(document["created_at"]),
        status=DeliveryStatus(document["status"]),
        attempts=tuple(
            Attempt(
                at=aware(attempt["at"]),
                outcome=AttemptOutcome(attempt["outcome"]),
                duration_ms=attempt["duration_ms"],
                status_code=attempt.get("status_code"),
                error=attempt.get("error"),
            )
            for attempt in document.get("attempts", [])
        ),
        next_attempt_at=aware(document.get("next_attempt_at")),
        trace_headers=dict(document.get("trace_headers") or {}),
    )
