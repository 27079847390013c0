"""The providers' bounce and complaint reports, read: which addresses to suppress, and why.

Pure functions over the parsed JSON bodies, so that both webhooks and their
tests share one reading. Only what is final counts: a hard bounce or a
complaint; a soft bounce, an auto-reply or a delivery is ignored.
"""

from __future__ import annotations

import json
from typing import Any

# Postmark's bounce types (its Bounce webhook's ``Type``) that mean the address is dead.
POSTMARK_HARD_BOUNCES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
POSTMARK_COMPLAINTS = frozenset({"SpamComplaint"})
MAX_RECIPIENTS = 50
# RFC 5321's bound on a path, and the messages' (common/messaging/messages.py).
MAX_ADDRESS_LENGTH = 320


class UnreadableReport(ValueError):
    """Not a report of the provider's documented shape."""


def postmark_report(body: Any) -> list[tuple[str, str]]:
    """(address, reason) pairs from a Postmark Bounce or SpamComplaint webhook body."""
    if not isinstance(body, dict):
        raise UnreadableReport("not a JSON object")
    record_type = body.get("RecordType")
    email = body.get("Email")
    if record_type not in ("Bounce", "SpamComplaint"):
        return []  # deliveries, opens, subscription changes: nothing to suppress
    if not isinstance(email, str) or not _address(email):
        raise UnreadableReport("no Email")
    kind = body.get("Type")
    if record_type == "SpamComplaint" or kind in POSTMARK_COMPLAINTS:
        return [(email, "complaint")]
    if kind in POSTMARK_HARD_BOUNCES or body.get("Inactive") is True:
        return [(email, "bounce")]
    return []


def ses_report(message: str) -> list[tuple[str, str]]:
    """(address, reason) pairs from the ``Message`` of an SNS notification of SES: a feedback
    notification (``notificationType``) or a published event (``eventType``)."""
    try:
        body = json.loads(message)
    except ValueError:
        raise UnreadableReport("Message is not JSON") from None
    if not isinstance(body, dict):
        raise UnreadableReport("Message is not a JSON object")
    kind = body.get("notificationType") or body.get("eventType")
    if kind == "Bounce":
        bounce = body.get("bounce")
        if not isinstance(bounce, dict):
            raise UnreadableReport("no bounce")
        if bounce.get("bounceType") != "Permanent":
            return []
        return [(address, "bounce") for address in _addresses(bounce.get("bouncedRecipients"))]
    if kind == "Complaint":
        complaint = body.get("complaint")
        if not isinstance(complaint, dict):
            raise UnreadableReport("no complaint")
        return [(address, "complaint") for address in _addresses(complaint.get("complainedRecipients"))]
    return []


def _addresses(recipients: Any) -> list[str]:
    if not isinstance(recipients, list):
        raise UnreadableReport("no recipients")
    found = []
    for recipient in recipients[:MAX_RECIPIENTS]:
        address = recipient.get("emailAddress") if isinstance(recipient, dict) else None
        if not isinstance(address, str) or not _address(_bare(address)):
            raise UnreadableReport("a recipient without emailAddress")
        found.append(_bare(address))
    return found


def _address(value: Any) -> bool:
    return (
        isinstance(value, str)
        and "@" in value
        and len(value) <= MAX_ADDRESS_LENGTH
        and value.isascii()
        and value.isprintable()
    )


def _bare(address: str) -> str:
    # SES may write "Name <a@example.com>".
    if "<" in address and address.rstrip().endswith(">"):
        return address[address.rindex("<") + 1 : address.rindex(">")].strip()
    return address.strip()


# The fields each SNS message type signs, in this order (AWS: "Verifying the signatures of
# Amazon SNS messages"); Subject only when the message has one.
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    fields = SIGNED_FIELDS.get(message.get("Type", ""))
    if fields is None:
        raise UnreadableReport("unknown SNS message Type")
    parts = []
    for name in fields:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise UnreadableReport(f"SNS message without {name}")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode()
