"""``/admin/webhooks``: endpoints that receive the account events, their secrets and their deliveries.

Every operation needs the scope ``webhooks:write`` (listing too: a URL may carry a receiver's
credential in its path). A secret is in the answer that creates or rotates it, and nowhere else.
"""

from __future__ import annotations

from auth_service.domain.admin_keys import WEBHOOKS_WRITE
from auth_service.domain.webhooks import Delivery, Endpoint
from auth_service.entrypoints.http.admin import schemas
from auth_service.entrypoints.http.admin.access import AdminBlueprint, admin_services
from auth_service.entrypoints.http.schemas import ErrorResponse
from auth_service.service_layer.flows.webhook_endpoints import WebhookEndpoints

webhooks = AdminBlueprint("admin_webhooks", __name__, url_prefix="/admin", description="Webhooks")


def _endpoints() -> WebhookEndpoints:
    return admin_services("webhooks")


def _endpoint(endpoint: Endpoint) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "created_at": endpoint.created_at,
        "disabled_at": endpoint.disabled_at,
        "failing_since": endpoint.failing_since,
    }


def _delivery(delivery: Delivery) -> dict:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status.value,
        "created_at": delivery.created_at,
        "next_attempt_at": delivery.next_attempt_at,
        "attempts": [
            {
                "at": attempt.at,
                "outcome": attempt.outcome.value,
                "status_code": attempt.status_code,
                "duration_ms": attempt.duration_ms,
                "error": attempt.error,
            }
            for attempt in delivery.attempts
        ],
    }


@webhooks.route("/webhooks", methods=["POST"])
@webhooks.requires(WEBHOOKS_WRITE)
@webhooks.arguments(schemas.WebhookCreate())
@webhooks.response(201, schemas.WebhookCreated)
@webhooks.alt_response(422, schema=ErrorResponse, description="validation_error: a URL refused (scheme, address)")
@webhooks.alt_response(503, schema=ErrorResponse, description="service_unavailable: the broker does not answer")
def create_webhook(body):
    """Add an endpoint; its ``secret`` (whsec_...) is shown in this answer only."""
    endpoint, secret = _endpoints().create(body["url"], body["events"], body.get("description"))
    return {**_endpoint(endpoint), "secret": secret}


@webhooks.route("/webhooks", methods=["GET"])
@webhooks.requires(WEBHOOKS_WRITE)
@webhooks.response(200, schemas.WebhookList)
def list_webhooks():
    """Every endpoint, oldest first, enabled or not (never a secret)."""
    return {"webhooks": [_endpoint(endpoint) for endpoint in _endpoints().endpoints()]}


@webhooks.route("/webhooks/<endpoint_id>", methods=["DELETE"])
@webhooks.requires(WEBHOOKS_WRITE)
@webhooks.response(204)
@webhooks.alt_response(404, schema=ErrorResponse, description="not_found")
def delete_webhook(endpoint_id: str):
    """Remove an endpoint and its delivery log; nothing more is sent to it."""
    _endpoints().delete(endpoint_id)
    return None


@webhooks.route("/webhooks/<endpoint_id>/rotate-secret", methods=["POST"])
@webhooks.requires(WEBHOOKS_WRITE)
@webhooks.response(200, schemas.WebhookSecret)
@webhooks.alt_response(404, schema=ErrorResponse, description="not_found")
def rotate_webhook_secret(endpoint_id: str):
    """A new secret signs from now on; the previous one signs beside it for 24 hours."""
    return {"secret": _endpoints().rotate_secret(endpoint_id)}


@webhooks.route("/webhooks/<endpoint_id>/enable", methods=["POST"])
@webhooks.requires(WEBHOOKS_WRITE)
@webhooks.response(200, schemas.Webhook)
@webhooks.alt_response(404, schema=ErrorResponse, description="not_found")
def enable_webhook(endpoint_id: str):
    """Take back an endpoint disabled after failing WEBHOOK_DISABLE_AFTER_DAYS; its failed deliveries stay
    failed until retried."""
    return _endpoint(_endpoints().enable(endpoint_id))


@webhooks.route("/webhooks/<endpoint_id>/deliveries", methods=["GET"])
@webhooks.requires(WEBHOOKS_WRITE)
@webhooks.arguments(schemas.DeliveryArgs(), location="query")
@webhooks.response(200, schemas.DeliveryList)
@webhooks.alt_response(404, schema=ErrorResponse, description="not_found")
def list_deliveries(args, endpoint_id: str):
    """The endpoint's latest deliveries (newest first, at most 100) with every attempt; filter by status."""
    found = _endpoints().deliveries(endpoint_id, args["status"])
    return {"deliveries": [_delivery(delivery) for delivery in found]}


@webhooks.route("/webhooks/<endpoint_id>/deliveries/<delivery_id>/retry", methods=["POST"])
@webhooks.requires(WEBHOOKS_WRITE)
@webhooks.response(202, schemas.Accepted)
@webhooks.alt_response(404, schema=ErrorResponse, description="not_found")
def retry_delivery(endpoint_id: str, delivery_id: str):
    """Attempt the delivery again now (a failed one, or one the receiver lost); it keeps its webhook-id."""
    _endpoints().retry(endpoint_id, delivery_id)
    return {"status": "pending"}
