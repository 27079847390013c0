"""``DELETE /admin/suppressions/{email}``: an address that bounced or complained gets mail again."""

from __future__ import annotations

from auth_service.domain.accounts import EMAIL_MAX_LENGTH
from auth_service.domain.admin_keys import USERS_WRITE
from auth_service.domain.errors import FieldRefused
from auth_service.entrypoints.http.admin.access import AdminBlueprint, admin_services
from auth_service.entrypoints.http.schemas import ErrorResponse
from auth_service.service_layer.flows.account_admin import AccountAdmin

suppressions = AdminBlueprint(
    "admin_suppressions", __name__, url_prefix="/admin/suppressions", description="Mail suppressions"
)


@suppressions.route("/<string:email>", methods=["DELETE"])
@suppressions.requires(USERS_WRITE)
@suppressions.response(204)
@suppressions.alt_response(422, schema=ErrorResponse, description="validation_error: not an email address")
@suppressions.alt_response(503, schema=ErrorResponse, description="service_unavailable: the broker did not confirm")
def lift_suppression(email):
    """Take the address off the suppression list: the worker mails it again, ``email_deliverable`` turns true.
    Answered alike whether or not it was on the list."""
    if len(email) > EMAIL_MAX_LENGTH or "@" not in email:
        raise FieldRefused("email", "Not an email address.")
    admin: AccountAdmin = admin_services("accounts")
    admin.lift_suppression(email)
    return None, 204
