"""Bounce and complaint reports (Postmark's webhook, SES through SNS) on the unit system: auth
checks them, the worker stops mailing the address, auth answers email_deliverable and publishes
user.email_undeliverable, and nothing a client sees at registration or resend changes."""

from __future__ import annotations

import base64
import json

import pytest

from auth_service.adapters.sns import SnsRefused, SnsVerifier
from auth_service.domain.mail_reports import UnreadableReport, postmark_report, ses_report
from common.messaging.messages import SuppressionLifted, UserEmailUndeliverable
from tests.sns import CERT_URL, TOPIC, SnsSigner, bounce, complaint
from tests.unit.test_api import PASSWORD, register, token_for

CREDENTIALS = {"POSTMARK_WEBHOOK_USERNAME": "postmark", "POSTMARK_WEBHOOK_PASSWORD": "webhook-password-0123456789"}


@pytest.fixture(scope="module")
def signer():
    return SnsSigner()


@pytest.fixture
def reports_system(make_system, signer, tmp_path):
    certificate = tmp_path / "sns.pem"
    certificate.write_bytes(signer.pem)
    system = make_system({**CREDENTIALS, "SES_SNS_TOPIC_ARNS": TOPIC, "SNS_TRUSTED_CERTIFICATE_FILE": str(certificate)})
    system.confirmed_urls = []
    system.auth.app.config["SNS_CONFIRM"] = lambda message: system.confirmed_urls.append(message["SubscribeURL"])
    return system


def basic(username: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def postmark_post(system, body, username="postmark", password=CREDENTIALS["POSTMARK_WEBHOOK_PASSWORD"]):
    return system.client.post("/webhooks/mail/postmark", json=body, headers=basic(username, password))


def sns_post(system, message: dict):
    # SNS posts its JSON as text/plain.
    return system.client.post("/webhooks/mail/ses", data=json.dumps(message), content_type="text/plain; charset=UTF-8")


def deliverable(system, token) -> bool:
    return system.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json["email_deliverable"]


def mails_to(system, email) -> int:
    return sum(1 for mail in system.outbox if email in mail.recipients)


def undeliverable_events(system) -> list:
    return system.broker.sent_to(UserEmailUndeliverable.TYPE)


def test_a_postmark_hard_bounce_stops_mail_and_auth_says_so(reports_system, unique_email):
    system = reports_system
    email = unique_email()
    token = token_for(system, email)
    assert deliverable(system, token) is True
    before = mails_to(system, email)
    answer = postmark_post(system, {"RecordType": "Bounce", "Type": "HardBounce", "Email": email, "Inactive": True})
    assert answer.status_code == 200 and answer.json["suppressed"] == 1
    assert deliverable(system, token) is False
    [event] = undeliverable_events(system)
    assert (
        event.body["email"] == email and event.body["reason"] == "bounce" and event.type == UserEmailUndeliverable.TYPE
    )
    # Asking for a code answers as for any address, and mails nothing.
    assert system.client.post("/auth/password/forgot", json={"email": email}).status_code == 202
    assert mails_to(system, email) == before
    # Reported again: recorded once, one event.
    assert postmark_post(system, {"RecordType": "SpamComplaint", "Email": email}).status_code == 200
    assert len(undeliverable_events(system)) == 1


def test_postmark_reports_need_the_webhook_credentials(reports_system, make_system, unique_email):
    email = unique_email()
    report = {"RecordType": "SpamComplaint", "Email": email}
    for headers in ({}, basic("postmark", "wrong"), basic("other", CREDENTIALS["POSTMARK_WEBHOOK_PASSWORD"])):
        answer = reports_system.client.post("/webhooks/mail/postmark", json=report, headers=headers)
        assert answer.status_code == 401 and answer.json["error"] == "invalid_credentials"
    unconfigured = make_system()
    assert postmark_post(unconfigured, report).status_code == 401
    assert reports_system.auth.mail_suppressions.deliverable(email)


def test_a_soft_bounce_or_a_malformed_report_changes_nothing(reports_system, unique_email):
    email = unique_email()
    assert (
        postmark_post(reports_system, {"RecordType": "Bounce", "Type": "SoftBounce", "Email": email}).json["suppressed"]
        == 0
    )
    answer = postmark_post(reports_system, {"RecordType": "Bounce", "Type": "HardBounce"})
    assert answer.status_code == 400 and answer.json["error"] == "bad_request"
    answer = reports_system.client.post(
        "/webhooks/mail/postmark",
        data="[]",
        content_type="application/json",
        headers=basic("postmark", CREDENTIALS["POSTMARK_WEBHOOK_PASSWORD"]),
    )
    assert answer.status_code == 400
    assert reports_system.auth.mail_suppressions.deliverable(email)


def test_an_ses_bounce_and_complaint_through_sns_stop_mail(reports_system, signer, unique_email):
    system = reports_system
    bounced, complained = unique_email("bounced"), unique_email("complained")
    tokens = {email: token_for(system, email) for email in (bounced, complained)}
    assert sns_post(system, signer.notification(bounce(bounced))).status_code == 200
    assert sns_post(system, signer.notification(complaint(complained), version="2")).status_code == 200
    assert not deliverable(system, tokens[bounced]) and not deliverable(system, tokens[complained])
    assert sorted(event.body["reason"] for event in undeliverable_events(system)) == ["bounce", "complaint"]
    before = mails_to(system, bounced)
    system.client.post("/auth/password/forgot", json={"email": bounced})
    assert mails_to(system, bounced) == before


def test_forged_or_foreign_sns_messages_are_refused(reports_system, signer, unique_email):
    system = reports_system
    email = unique_email()
    genuine = signer.notification(bounce("someone-else@example.com"))
    forged = {**genuine, "Message": json.dumps(bounce(email))}
    other_key = SnsSigner().notification(bounce(email))
    foreign_topic = signer.notification(bounce(email), topic="arn:aws:sns:us-east-1:999999999999:attacker")
    elsewhere = signer.sign(
        {**signer.notification(bounce(email)), "SigningCertURL": "https://evil.example.com/cert.pem"}
    )
    for message in (forged, other_key, foreign_topic, elsewhere, {**genuine, "Signature": "not base64!"}):
        answer = sns_post(system, message)
        assert answer.status_code == 403 and answer.json["error"] == "forbidden"
    assert system.auth.mail_suppressions.deliverable(email)
    assert sns_post(system, signer.notification(bounce(email, bounce_type="Transient"))).json["suppressed"] == 0
    assert sns_post(system, {"Type": "Notification"}).status_code == 403
    assert system.client.post("/webhooks/mail/ses", data="{", content_type="text/plain").status_code == 400
    assert system.auth.mail_suppressions.deliverable(email)


def test_a_subscription_confirmation_is_confirmed_once_its_signature_checks_out(reports_system, signer):
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "m-1",
        "Token": "token-1",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=token-1",
        "Timestamp": "2026-12-06T12:00:00.000Z",
    }
    forged = {**signer.sign(message), "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Other"}
    assert sns_post(reports_system, forged).status_code == 403
    assert reports_system.confirmed_urls == []
    assert sns_post(reports_system, signer.sign(message)).json == {"status": "subscribed"}
    assert reports_system.confirmed_urls == [message["SubscribeURL"]]


def test_registering_a_suppressed_address_answers_as_for_any_other(reports_system, unique_email):
    email = unique_email()
    postmark_post(reports_system, {"RecordType": "SpamComplaint", "Email": email})
    answer = register(reports_system.client, email)
    assert answer.status_code == 201 and answer.json["status"] == "pending_verification"
    assert mails_to(reports_system, email) == 0
    reports_system.cooldown_clock.advance(reports_system.auth_settings.resend_cooldown_seconds + 1)
    assert reports_system.client.post("/auth/resend-code", json={"email": email}).status_code == 202
    assert mails_to(reports_system, email) == 0


def test_a_lift_reaches_auth_and_mail_flows_again(reports_system, unique_email):
    from email_service.adapters.suppressions import RedisSuppressions
    from email_service.suppressions import lift_suppression

    system = reports_system
    email = unique_email()
    token = token_for(system, email)
    postmark_post(system, {"RecordType": "SpamComplaint", "Email": email})
    assert not deliverable(system, token)
    worker_list = RedisSuppressions(system.redis, system.worker_settings.redis_key_prefix)
    assert lift_suppression(worker_list, system.broker.publish, system.auth_settings.account_confirmed_queue, email)
    assert system.broker.sent_to(system.auth_settings.account_confirmed_queue)[-1].type == SuppressionLifted.TYPE
    assert deliverable(system, token)
    before = mails_to(system, email)
    system.client.post("/auth/password/forgot", json={"email": email})
    assert mails_to(system, email) == before + 1
    assert system.client.post("/auth/login", json={"email": email, "password": PASSWORD}).status_code == 200


# --- the readings and the checks on their own -------------------------------------------------


def test_postmark_reports_read():
    assert postmark_report({"RecordType": "Bounce", "Type": "HardBounce", "Email": "a@x.io"}) == [("a@x.io", "bounce")]
    assert postmark_report({"RecordType": "Bounce", "Type": "Transient", "Email": "a@x.io", "Inactive": True}) == [
        ("a@x.io", "bounce")
    ]
    assert postmark_report({"RecordType": "SpamComplaint", "Email": "a@x.io"}) == [("a@x.io", "complaint")]
    assert postmark_report({"RecordType": "Delivery", "Email": "a@x.io"}) == []
    for unreadable in (["not", "an", "object"], {"RecordType": "SpamComplaint", "Email": "a" * 320 + "@x.io"}):
        with pytest.raises(UnreadableReport):
            postmark_report(unreadable)
    with pytest.raises(UnreadableReport):
        postmark_report({"RecordType": "SpamComplaint", "Email": "a\n@x.io"})


def test_ses_reports_read_both_notification_forms():
    assert ses_report(json.dumps(bounce("Ada <a@x.io>"))) == [("a@x.io", "bounce")]
    event = {**complaint("b@x.io"), "eventType": "Complaint"}
    del event["notificationType"]
    assert ses_report(json.dumps(event)) == [("b@x.io", "complaint")]
    assert ses_report(json.dumps({"notificationType": "Delivery"})) == []
    with pytest.raises(UnreadableReport):
        ses_report(json.dumps({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent"}}))


def test_the_signing_certificate_is_fetched_from_sns_only_and_kept(signer):
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return signer.pem

    verifier = SnsVerifier(frozenset({TOPIC}), fetch=fetch)
    message = signer.notification(bounce("a@x.io"))
    verifier.verify(message)
    verifier.verify(signer.notification(complaint("b@x.io")))
    assert fetched == [CERT_URL]
    for url in (
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.io/cert.pem",
        "https://evil.io/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
    ):
        with pytest.raises(SnsRefused):
            verifier.verify(signer.sign({**message, "SigningCertURL": url}))
    assert fetched == [CERT_URL]
