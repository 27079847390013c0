"""The account document's fields to and from the domain's types."""

from __future__ import annotations

from auth_service.adapters.mongo_support import aware
from auth_service.domain.accounts import (
    Deletion,
    Disablement,
    LeftAddress,
    NotMeLink,
    PendingChange,
    Status,
    TrustedDevice,
    User,
)
from auth_service.domain.activity import Client
from auth_service.ports import OutboxEntry
from common.messaging.envelope import Outgoing
from common.messaging.messages import Purpose

PENDING = Status.PENDING_VERIFICATION.value


def deletion_document(deletion: Deletion) -> dict:
    return {
        "id": deletion.id,
        "email": deletion.email,
        "requested_at": deletion.requested_at,
        "delete_after": deletion.delete_after,
        "notice_id": deletion.notice_id,
    }


def deletion_of(raw: dict | None) -> Deletion | None:
    if not isinstance(raw, dict):
        return None
    return Deletion(
        id=raw["id"],
        email=raw["email"],
        requested_at=aware(raw["requested_at"]),
        delete_after=aware(raw["delete_after"]),
        notice_id=raw["notice_id"],
    )


def disablement_document(disablement: Disablement) -> dict:
    return {
        "id": disablement.id,
        "reason": disablement.reason,
        "at": disablement.at,
        "by": disablement.by,
        "until": disablement.until,
    }


def disablement_of(raw: dict | None) -> Disablement | None:
    if not raw:
        return None
    return Disablement(
        id=raw["id"], reason=raw["reason"], at=aware(raw["at"]), by=raw.get("by"), until=aware(raw.get("until"))
    )


def mutable_fields(user: User) -> dict:
    """What a registration sets, the first one or one that takes a pending account over."""
    return {
        "name": user.name,
        "password_hash": user.password_hash,
        "status": user.status.value,
        "created_at": user.created_at,
        "registered_seq": user.registered_seq,
        "code_seq": user.code_seq,
        "expires_at": user.expires_at,
        "locale": user.locale,
    }


def stored_sequence(code_seq: int):
    # Documents stored before code requests were numbered have no code_seq (read as 0).
    return code_seq if code_seq else {"$in": [0, None]}


def entry_document(entry: OutboxEntry) -> dict:
    message = entry.message
    document: dict[str, object] = {
        "queue": entry.queue,
        "message_id": message.message_id,
        "type": message.type,
        "body": message.body,
        "request_id": message.request_id,
    }
    if message.expiration_ms is not None:
        document["expiration_ms"] = message.expiration_ms
    if entry.client is not None:
        client = {"ip": entry.client.ip, "device": entry.client.device}
        if entry.client.actor is not None:
            client["actor"] = entry.client.actor
        document["client"] = client
    return document


def each(entries: list[OutboxEntry]) -> dict:
    return {"$each": [entry_document(entry) for entry in entries]}


def entry_of(raw: dict) -> OutboxEntry:
    client = raw.get("client")
    return OutboxEntry(
        queue=raw["queue"],
        message=Outgoing(
            type=raw["type"],
            body=raw["body"],
            message_id=raw["message_id"],
            request_id=raw.get("request_id"),
            expiration_ms=raw.get("expiration_ms"),
        ),
        client=Client(client.get("ip"), client.get("device"), client.get("actor"))
        if isinstance(client, dict)
        else None,
    )


def change_document(change: PendingChange) -> dict:
    document = {
        "submission_id": change.submission_id,
        "purpose": change.purpose.value,
        "stored_at": change.stored_at,
    }
    if change.password_hash is not None:
        document["password_hash"] = change.password_hash
    if change.new_email is not None:
        document["new_email"] = change.new_email
    return document


def change_of(raw: dict) -> PendingChange:
    return PendingChange(
        submission_id=raw["submission_id"],
        purpose=Purpose(raw["purpose"]),
        stored_at=raw["stored_at"],
        password_hash=raw.get("password_hash"),
        new_email=raw.get("new_email"),
    )


def not_me_of(raw: dict) -> NotMeLink:
    return NotMeLink(
        raw["digest"],
        raw["email"],
        raw["notice"],
        aware(raw["expires_at"]),
        used=bool(raw.get("used_at")) or bool(raw.get("used")),
        void=bool(raw.get("void")),
    )


def not_me_document(link: NotMeLink) -> dict:
    document: dict = {"digest": link.digest, "email": link.email, "notice": link.notice, "expires_at": link.expires_at}
    if link.used:
        document["used"] = True
    if link.void:
        document["void"] = True
    return document


def left_document(left: LeftAddress) -> dict:
    return {"email": left.email, "left_at": left.left_at, "undo_until": left.undo_until}


def left_of(raw: dict) -> LeftAddress:
    return LeftAddress(raw["email"], aware(raw["left_at"]), aware(raw["undo_until"]))


def user_of(document: dict | None) -> User | None:
    if document is None:
        return None
    return User(
        id=document["_id"],
        email=document["email"],
        name=document.get("name"),
        password_hash=document["password_hash"],
        status=Status(document["status"]),
        created_at=aware(document["created_at"]),
        registered_seq=document.get("registered_seq") or 0,
        code_seq=document.get("code_seq") or 0,
        expires_at=aware(document.get("expires_at")),
        confirmed_code_tag=document.get("confirmed_code_tag"),
        pending_email=document.get("pending_email"),
        token_version=document.get("token_version") or 0,
        locale=document.get("locale"),
        failed_logins=document.get("failed_logins") or 0,
        locked_until=aware(document.get("locked_until")),
        lock_id=document.get("lock_id"),
        mfa_enabled=bool(document.get("mfa_enabled")),
        trusted_devices=tuple(
            TrustedDevice(raw["device"], aware(raw["until"])) for raw in document.get("trusted_devices") or []
        ),
        deletion=deletion_of(document.get("deletion")),
        known_devices=tuple(raw["key"] for raw in document.get("known_devices") or []),
        address_history=tuple(left_of(raw) for raw in document.get("address_history") or []),
        must_reset=bool(document.get("must_reset")),
        frozen_at=aware(document.get("frozen_at")),
        disablement=disablement_of(document.get("disablement")),
    )
