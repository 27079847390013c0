"""The mail providers' reports: Postmark's bounce and complaint webhook, and SES's through SNS.

Served by auth, on AUTH_PORT beside its API (docs/mail.md says why): a
report that checks out puts its addresses on the suppression list
(auth_service/service_layer/flows/mail_suppressions.py). A report that does not check out is
refused and changes nothing; one that is not about a dead address (a soft
bounce, a delivery) is answered 200 and ignored, so the provider does not
send it again.
"""

from __future__ import annotations

import hmac
import json
import logging

from flask import current_app, request
from flask_smorest import Blueprint
from werkzeug.exceptions import BadRequest

from auth_service.adapters.sns import SnsRefused, SnsVerifier
from auth_service.domain.mail_reports import UnreadableReport, postmark_report, ses_report
from auth_service.entrypoints.http import schemas
from auth_service.entrypoints.http.errors import error_response
from auth_service.service_layer.flows.mail_suppressions import MailSuppressions

log = logging.getLogger(__name__)

mail_webhooks = Blueprint(
    "mail_webhooks",
    __name__,
    url_prefix="/webhooks/mail",
    description="The mail providers' bounce and complaint reports (docs/mail.md)",
)
ERROR = schemas.ErrorResponse

# SNS posts its JSON as text/plain: these endpoints read their body themselves.
RAW_BODY_ENDPOINTS = frozenset({"mail_webhooks.ses"})


def _suppressions() -> MailSuppressions:
    return current_app.extensions["auth_service"].mail_suppressions


def _record(reports: list[tuple[str, str]], source: str) -> None:
    for email, reason in reports:
        _suppressions().reported(email, reason, source)


@mail_webhooks.route("/postmark", methods=["POST"])
@mail_webhooks.doc(
    requestBody={
        "required": True,
        "description": "Postmark's Bounce or SpamComplaint webhook body",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
)
@mail_webhooks.response(200, schemas.MailReportResponse)
@mail_webhooks.alt_response(400, schema=ERROR, description="bad_request: not a Postmark report")
@mail_webhooks.alt_response(401, schema=ERROR, description="invalid_credentials: POSTMARK_WEBHOOK_* in basic auth")
def postmark():
    """Postmark's Bounce and SpamComplaint webhook, behind HTTP basic auth."""
    username, password = current_app.config["POSTMARK_WEBHOOK_CREDENTIALS"]
    given = request.authorization
    allowed = (
        username is not None
        and password is not None
        and given is not None
        and given.type == "basic"
        and hmac.compare_digest((given.username or "").encode(), username.encode())
        and hmac.compare_digest((given.password or "").encode(), password.encode())
    )
    if not allowed:
        return error_response(
            401,
            "invalid_credentials",
            "Postmark's webhook credentials are required.",
            {"WWW-Authenticate": 'Basic realm="mail reports"'},
        )
    try:
        reports = postmark_report(request.get_json(silent=True))
    except UnreadableReport as error:
        raise BadRequest(f"Not a Postmark report: {error}.") from None
    _record(reports, "postmark")
    return {"status": "ok", "suppressed": len(reports)}, 200


@mail_webhooks.route("/ses", methods=["POST"])
@mail_webhooks.doc(
    requestBody={
        "required": True,
        "description": "An SNS message, a subscription confirmation or a notification of an SES bounce or "
        "complaint: JSON, read whatever its content type (SNS sends it as text/plain)",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
)
@mail_webhooks.response(200, schemas.MailReportResponse)
@mail_webhooks.alt_response(400, schema=ERROR, description="bad_request: not an SNS message, or not an SES report")
@mail_webhooks.alt_response(403, schema=ERROR, description="forbidden: not signed by SNS for an allowed topic")
@mail_webhooks.alt_response(503, schema=ERROR, description="service_unavailable: the subscription not confirmed")
def ses():
    """SES's bounce and complaint notifications through SNS, with the SNS signature checked."""
    verifier: SnsVerifier = current_app.config["SNS_VERIFIER"]
    try:
        message = json.loads(request.get_data(cache=False, as_text=True))
    except ValueError:
        raise BadRequest("The body must be an SNS message (JSON).") from None
    if not isinstance(message, dict):
        raise BadRequest("The body must be an SNS message (a JSON object).")
    try:
        verifier.verify(message)
    except SnsRefused as error:
        log.warning("SNS message refused", extra={"reason": str(error)})
        return error_response(403, "forbidden", "Not a message signed by Amazon SNS for an allowed topic.")
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        try:
            current_app.config["SNS_CONFIRM"](message)
        except (OSError, SnsRefused) as error:
            log.warning("SNS subscription not confirmed", extra={"reason": type(error).__name__})
            return error_response(503, "service_unavailable", "The subscription could not be confirmed; try again.")
        log.info("SNS subscription confirmed", extra={"topic": message.get("TopicArn")})
        return {"status": "subscribed"}, 200
    if kind != "Notification":
        return {"status": "ignored"}, 200
    try:
        reports = ses_report(str(message.get("Message", "")))
    except UnreadableReport as error:
        raise BadRequest(f"Not an SES notification: {error}.") from None
    _record(reports, "ses")
    return {"status": "ok", "suppressed": len(reports)}, 200
