"""Password reset, address change and confirmation by link, on fakes (mongomock, fakeredis, in-memory broker).

The same handlers and use cases as production; the in-memory broker runs the
worker's handlers and auth's consumer synchronously, so a verified code's
durable ``code.verified`` reaches auth before the waiting request's reply,
unless a test holds the queue back.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from auth_service.domain.accounts import Status
from common.links import parse_link_token_reference
from common.messaging.messages import CodeVerified, Purpose
from email_service.domain.codes import Slot
from tests.fakes import as_delivered
from tests.unit.test_sessions import PASSWORD, login, me, refresh, sign_up

NEW_PASSWORD = "a brand new passphrase 7"
CODE = re.compile(r"\b\d{6}\b")
FORM_TOKEN = re.compile(r'<input type="hidden" name="token" value="([^"]+)">')


def mails_to(system, email: str, subject_part: str = "") -> list:
    return [m for m in system.outbox if email in m.recipients and subject_part in m.subject]


def code_in(mail) -> str:
    found = CODE.search(mail.body)
    assert found is not None, f"no code in {mail.subject!r}"
    return found.group(0)


def forgot(system, email, **kwargs):
    return system.client.post("/auth/password/forgot", json={"email": email}, **kwargs)


def reset(system, email, code, new_password=NEW_PASSWORD):
    return system.client.post("/auth/password/reset", json={"email": email, "code": code, "new_password": new_password})


def reset_code(system, email) -> str:
    assert forgot(system, email).status_code == 202
    return code_in(mails_to(system, email, "Reset")[-1])


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def change_email(system, access_token, new_email, password=PASSWORD):
    return system.client.post(
        "/auth/email/change", json={"new_email": new_email, "password": password}, headers=bearer(access_token)
    )


def confirm_email(system, access_token, code):
    return system.client.post("/auth/email/confirm", json={"code": code}, headers=bearer(access_token))


@pytest.fixture
def account(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    return {"email": email, **login(system, email)}


# --- forgot ---


def test_forgot_answers_alike_for_unknown_pending_and_confirmed_addresses(system, unique_email):
    confirmed, pending, unknown = unique_email(), unique_email(), unique_email()
    sign_up(system, confirmed)
    assert system.client.post("/auth/register", json={"email": pending, "password": PASSWORD}).status_code == 201

    answers = [forgot(system, email) for email in (confirmed, pending, unknown)]
    assert {(a.status_code, a.get_data()) for a in answers} == {(answers[0].status_code, answers[0].get_data())}
    assert answers[0].status_code == 202
    assert {tuple(sorted(set(a.headers.keys()) - {"X-Request-ID"})) for a in answers} == {
        tuple(sorted(set(answers[0].headers.keys()) - {"X-Request-ID"}))
    }
    assert len(mails_to(system, confirmed, "Reset")) == 1
    assert len(mails_to(system, pending, "Reset")) == 1
    assert mails_to(system, unknown) == []


def test_forgot_has_a_cooldown_for_every_address_known_or_not(system, unique_email):
    known, unknown = unique_email(), unique_email()
    sign_up(system, known)
    for email in (known, unknown):
        assert forgot(system, email).status_code == 202
        again = forgot(system, email)
        assert (again.status_code, again.json["error"]) == (429, "rate_limited")
        assert 1 <= int(again.headers["Retry-After"]) <= system.auth_settings.resend_cooldown_seconds
    system.cooldown_clock.advance(system.auth_settings.resend_cooldown_seconds)
    assert forgot(system, known).status_code == 202
    assert len(mails_to(system, known, "Reset")) == 2


def test_forgot_mails_a_reset_code_to_a_known_address_only(system, unique_email):
    # The request's own work is the same for every address (test_accounts_hardening.py,
    # test_a_code_asked_by_address_costs_the_request_the_same_whatever_the_address); here, what follows it.
    known, unknown = unique_email(), unique_email()
    sign_up(system, known)
    before = len(system.broker.deliveries)
    forgot(system, unknown)
    assert len(system.broker.deliveries) == before
    forgot(system, known)
    [request] = system.broker.deliveries[before:]
    assert request.message.body["purpose"] == "reset_password"


# --- reset ---


def test_a_reset_sets_the_password_and_refuses_every_earlier_token(system, account):
    email = account["email"]
    other_device = login(system, email)
    code = reset_code(system, email)
    answer = reset(system, email, code)
    assert (answer.status_code, answer.json) == (200, {"status": "password_reset"})
    assert answer.headers["Cache-Control"] == "no-store"

    for pair in (account, other_device):
        assert me(system, pair["access_token"]).status_code == 401
        assert refresh(system, pair["refresh_token"]).status_code == 401
    assert system.client.post("/auth/login", json={"email": email, "password": PASSWORD}).status_code == 401
    fresh = login(system, email, NEW_PASSWORD)
    assert me(system, fresh["access_token"]).status_code == 200


def test_a_reset_proves_the_address_of_a_pending_account(system, unique_email):
    email = unique_email()
    assert system.client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    assert reset(system, email, reset_code(system, email)).status_code == 200
    user = system.auth.users.by_email(email)
    assert user.status is Status.VERIFIED
    assert login(system, email, NEW_PASSWORD)["token_type"] == "Bearer"


def test_a_reset_code_works_once(system, account):
    email = account["email"]
    code = reset_code(system, email)
    assert reset(system, email, code).status_code == 200
    again = reset(system, email, code, "yet another passphrase 9")
    # Used: no live code, answered as a wrong code (an address without one answers alike).
    assert (again.status_code, again.json["error"]) == (400, "invalid_code")
    assert login(system, email, NEW_PASSWORD)


def test_a_wrong_reset_code_counts_down_and_keeps_the_password(system, account):
    email = account["email"]
    code = reset_code(system, email)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    answer = reset(system, email, wrong)
    assert (answer.status_code, answer.json["error"], answer.json["attempts_left"]) == (400, "invalid_code", 4)
    user = system.auth.users.by_email(email)
    assert system.auth.users.pending_change(user.id, "anything") is None
    assert system.auth.users._users.find_one({"_id": user.id}).get("pending_changes") == []
    assert me(system, account["access_token"]).status_code == 200
    assert login(system, email)


def test_a_reset_for_an_unknown_address_answers_as_a_wrong_code_after_the_same_submission(system, unique_email):
    unknown = unique_email()
    answers = [reset(system, unknown, "123456") for _ in range(5)]
    assert [(a.status_code, a.json["error"], a.json.get("attempts_left")) for a in answers] == [
        (400, "invalid_code", 4),
        (400, "invalid_code", 3),
        (400, "invalid_code", 2),
        (400, "invalid_code", 1),
        (429, "too_many_attempts", None),
    ]
    submitted = system.broker.sent_to(system.worker_settings.confirm_email_code_queue)
    assert [message.body["email"] for message in submitted] == [unknown] * 5


def test_a_reset_uses_the_password_rules_of_register(system, account):
    for weak in ("short", "password", "x" * 73):
        answer = reset(system, account["email"], "123456", weak)
        assert (answer.status_code, answer.json["error"]) == (422, "validation_error")
        assert "new_password" in answer.json["fields"]


def test_a_registration_code_is_refused_by_reset_and_a_reset_code_by_confirm(system, unique_email):
    email = unique_email()
    assert system.client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    registration = code_in(mails_to(system, email, "Confirm your email")[0])
    code = reset_code(system, email)
    assert registration != code

    refused = reset(system, email, registration)
    assert (refused.status_code, refused.json["error"]) == (400, "invalid_code")
    refused = system.client.post("/auth/confirm", json={"email": email, "code": code})
    assert (refused.status_code, refused.json["error"]) == (400, "invalid_code")
    assert system.client.post("/auth/login", json={"email": email, "password": PASSWORD}).status_code == 403
    # Each still works for its own purpose.
    assert system.client.post("/auth/confirm", json={"email": email, "code": registration}).status_code == 200
    assert reset(system, email, code).status_code == 200


def test_a_reset_is_applied_once_when_the_durable_message_comes_first(system, account):
    # The in-memory broker hands the worker's code.verified to auth's consumer before the reply.
    email = account["email"]
    version = system.auth.users.by_email(email).token_version
    assert reset(system, email, reset_code(system, email)).status_code == 200
    to_auth = system.broker.sent_to(system.auth_settings.account_confirmed_queue)
    [verified] = [message for message in to_auth if message.type == CodeVerified.TYPE][-1:]
    assert verified.body["purpose"] == "reset_password"
    assert system.auth.users.by_email(email).token_version == version + 1
    # The same message delivered again changes nothing.
    assert (
        system.auth.verified_codes.apply_verified(
            Purpose.RESET_PASSWORD, verified.body["user_id"], verified.body["submission_id"], email
        )
        is False
    )
    assert system.auth.users.by_email(email).token_version == version + 1


def test_a_reset_is_applied_once_when_the_reply_comes_first(system, account):
    email = account["email"]
    version = system.auth.users.by_email(email).token_version
    code = reset_code(system, email)
    system.broker.hold.add(system.auth_settings.account_confirmed_queue)  # auth's consumer is late
    assert reset(system, email, code).status_code == 200
    assert system.auth.users.by_email(email).token_version == version + 1
    fresh = login(system, email, NEW_PASSWORD)

    system.broker.release(system.auth_settings.account_confirmed_queue)
    [late] = [d for d in system.broker.deliveries if d.queue == system.auth_settings.account_confirmed_queue][-1:]
    assert late.result.outcome.value == "ack"
    assert system.auth.users.by_email(email).token_version == version + 1
    assert me(system, fresh["access_token"]).status_code == 200  # the late message revoked nothing more


def test_a_reset_whose_verdict_comes_too_late_is_applied_by_the_durable_message(system, account):
    email = account["email"]
    code = reset_code(system, email)
    system.broker.hold.add(system.auth_settings.confirm_email_code_queue)  # the worker is slow
    answer = reset(system, email, code)
    assert (answer.status_code, answer.json) == (202, {"status": "pending"})
    assert login(system, email)  # nothing applied yet
    system.broker.release(system.auth_settings.confirm_email_code_queue)
    assert system.client.post("/auth/login", json={"email": email, "password": PASSWORD}).status_code == 401
    assert me(system, account["access_token"]).status_code == 401
    assert login(system, email, NEW_PASSWORD)


def test_no_password_goes_on_a_queue(system, account):
    email = account["email"]
    reset(system, email, reset_code(system, email))
    for delivery in system.broker.deliveries:
        encoded = delivery.message.encoded_body().decode()
        assert NEW_PASSWORD not in encoded and PASSWORD not in encoded
        assert "password_hash" not in encoded and "$2b$" not in encoded


def test_a_durable_message_written_before_purposes_still_confirms_a_registration(system, unique_email):
    email = unique_email()
    response = system.client.post("/auth/register", json={"email": email, "password": PASSWORD})
    # Such a message (no purpose, no sequence number) comes from a worker of before, about a
    # registration stored before registrations were numbered (the worker is deployed first).
    system.auth.users._users.update_one({"email": email}, {"$unset": {"registered_seq": "", "code_seq": ""}})
    legacy = CodeVerified(user_id=response.json["id"]).outgoing(message_id="legacy-1")
    legacy = type(legacy)(type="account.confirmed", body={"user_id": response.json["id"]}, message_id="legacy-1")
    router = system.broker.handlers[system.auth_settings.account_confirmed_queue]
    assert router(as_delivered(legacy), system.broker).outcome.value == "ack"
    assert system.auth.users.by_email(email).verified


# --- address change ---


def test_an_address_change_mails_a_code_and_notices_and_moves_the_login(system, account, unique_email):
    old, new = account["email"], unique_email()
    answer = change_email(system, account["access_token"], f"  {new.upper()} ")
    assert answer.status_code == 202
    [asked] = mails_to(system, old, "asked for")
    assert new in asked.body and CODE.search(asked.body) is None and new in asked.html
    [code_mail] = mails_to(system, new, "new email")
    assert login(system, old)  # nothing changes before the code

    confirmed = confirm_email(system, account["access_token"], code_in(code_mail))
    assert confirmed.status_code == 200
    assert (confirmed.json["email"], confirmed.json["id"]) == (new, system.auth.users.by_email(new).id)
    [done] = mails_to(system, old, "was changed")
    assert new in done.body and CODE.search(done.body) is None
    assert system.client.post("/auth/login", json={"email": old, "password": PASSWORD}).status_code == 401
    assert login(system, new)
    assert me(system, account["access_token"]).json["email"] == new


def test_an_address_change_needs_the_password_and_a_valid_token(system, account, unique_email):
    wrong = change_email(system, account["access_token"], unique_email(), "not the password")
    assert (wrong.status_code, wrong.json["error"]) == (401, "invalid_credentials")
    forged = change_email(system, account["access_token"] + "x", unique_email())
    assert (forged.status_code, forged.json["error"]) == (401, "invalid_token")
    invalid = change_email(system, account["access_token"], "not an address")
    assert (invalid.status_code, invalid.json["error"]) == (422, "validation_error")
    assert system.client.post("/auth/email/confirm", json={"code": "123456"}).status_code == 401


def test_an_address_of_a_confirmed_account_is_taken_in_any_case(system, account, unique_email):
    other = unique_email()
    sign_up(system, other)
    taken = change_email(system, account["access_token"], other.upper())
    assert (taken.status_code, taken.json["error"]) == (409, "email_taken")


def test_an_address_held_by_an_unconfirmed_account_can_be_taken_by_proving_it(system, account, unique_email):
    new = unique_email()
    assert system.client.post("/auth/register", json={"email": new, "password": "somebody else 123"}).status_code == 201
    assert change_email(system, account["access_token"], new).status_code == 202
    code = code_in(mails_to(system, new, "new email")[0])
    assert confirm_email(system, account["access_token"], code).json["email"] == new
    assert login(system, new)


def test_a_case_only_change_is_allowed(system, account):
    email = account["email"]
    assert change_email(system, account["access_token"], email.upper()).status_code == 202
    code = code_in(mails_to(system, email, "new email")[0])
    assert confirm_email(system, account["access_token"], code).json["email"] == email
    assert login(system, email)


def test_confirming_without_a_change_asked_for_is_code_expired(system, account):
    answer = confirm_email(system, account["access_token"], "123456")
    assert (answer.status_code, answer.json["error"]) == (410, "code_expired")


def test_an_address_change_code_is_refused_by_confirm_and_reset(system, account, unique_email):
    new = unique_email()
    change_email(system, account["access_token"], new)
    code = code_in(mails_to(system, new, "new email")[0])
    sign_up(system, other := unique_email())  # a registration of its own, to aim the code at
    for answer in (
        system.client.post("/auth/confirm", json={"email": new, "code": code}),
        reset(system, new, code),
        reset(system, account["email"], code),
    ):
        assert answer.status_code in (400, 410), answer.json
        assert answer.json["error"] in ("invalid_code", "code_expired")
    assert other and confirm_email(system, account["access_token"], code).status_code == 200


def test_a_reset_code_is_refused_by_the_address_change(system, account, unique_email):
    new = unique_email()
    change_email(system, account["access_token"], new)
    code = reset_code(system, account["email"])
    refused = confirm_email(system, account["access_token"], code)
    assert (refused.status_code, refused.json["error"]) == (400, "invalid_code")


def test_the_address_is_not_changed_if_a_confirmed_account_took_it_meanwhile(system, account, unique_email):
    new = unique_email()
    change_email(system, account["access_token"], new)
    code = code_in(mails_to(system, new, "new email")[0])
    # Somebody registers the address and confirms it before the change is confirmed.
    assert system.client.post("/auth/register", json={"email": new, "password": "somebody else 123"}).status_code == 201
    registration = code_in(mails_to(system, new, "Confirm your email")[0])
    assert system.client.post("/auth/confirm", json={"email": new, "code": registration}).status_code == 200
    taken = confirm_email(system, account["access_token"], code)
    assert (taken.status_code, taken.json["error"]) == (409, "email_taken")
    assert login(system, account["email"])


# --- verification by link ---


def link_of(system, email) -> str:
    mail = mails_to(system, email, "Confirm your email")[-1]
    [link] = re.findall(r"http://\S+/auth/verify\?token=\S+", mail.body)
    assert link in mail.html
    return link


def token_of(link: str) -> str:
    return parse_qs(urlparse(link).query)["token"][0]


@pytest.fixture
def pending(system, unique_email):
    email = unique_email()
    assert system.client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    return email


def test_the_verification_email_links_to_a_page_with_a_button_and_the_get_confirms_nothing(system, pending):
    link = link_of(system, pending)
    assert link.startswith("http://localhost:8000/auth/verify?token=")
    token = token_of(link)
    account_id, secret = parse_link_token_reference(token)
    assert account_id == system.auth.users.by_email(pending).id
    assert pending not in link and code_in(mails_to(system, pending)[0]) not in secret

    before = len(system.broker.deliveries)
    for _ in range(3):  # a scanner, a preview, the user
        page = system.client.get(urlparse(link).path + "?" + urlparse(link).query)
        assert page.status_code == 200 and page.mimetype == "text/html"
    assert len(system.broker.deliveries) == before  # nothing submitted
    assert not system.auth.users.by_email(pending).verified
    html = page.get_data(as_text=True)
    assert "<script" not in html and '<form method="post" action="/auth/verify">' in html
    assert FORM_TOKEN.search(html).group(1) == token


def test_the_button_confirms_once(system, pending):
    token = token_of(link_of(system, pending))
    page = system.client.post("/auth/verify", data={"token": token})
    assert page.status_code == 200 and "Address confirmed" in page.get_data(as_text=True)
    assert system.auth.users.by_email(pending).verified
    assert login(system, pending)
    again = system.client.post("/auth/verify", data={"token": token})
    assert again.status_code == 410 and again.mimetype == "text/html"


def test_a_link_spends_the_code_and_a_used_code_voids_the_link(system, pending, unique_email):
    token = token_of(link_of(system, pending))
    code = code_in(mails_to(system, pending)[0])
    assert system.client.post("/auth/verify", data={"token": token}).status_code == 200
    # The code was spent by the link: /auth/confirm answers for a confirmed address, the worker has nothing live.
    assert system.store.get(Slot(Purpose.VERIFY_EMAIL, pending)) is None

    other = unique_email()
    system.client.post("/auth/register", json={"email": other, "password": PASSWORD})
    other_token = token_of(link_of(system, other))
    other_code = code_in(mails_to(system, other)[0])
    assert system.client.post("/auth/confirm", json={"email": other, "code": other_code}).status_code == 200
    assert system.client.post("/auth/verify", data={"token": other_token}).status_code == 410
    assert code != other_code


def test_a_newer_code_voids_the_older_link(system, pending):
    first = token_of(link_of(system, pending))
    system.cooldown_clock.advance(system.auth_settings.resend_cooldown_seconds)
    system.clock.advance(1)
    assert system.client.post("/auth/resend-code", json={"email": pending}).status_code == 202
    second = token_of(link_of(system, pending))
    assert first != second
    assert system.client.post("/auth/verify", data={"token": first}).status_code == 410
    assert system.client.post("/auth/verify", data={"token": second}).status_code == 200


def test_the_link_expires_with_its_code(system, unique_email, redis_clock):
    email = unique_email()
    system.client.post("/auth/register", json={"email": email, "password": PASSWORD})
    token = token_of(link_of(system, email))
    assert system.client.get(f"/auth/verify?token={token}").status_code == 200
    past_the_code = system.worker_settings.code_ttl_seconds + 1
    system.clock.advance(past_the_code)
    redis_clock.advance(past_the_code)  # the code's time to live in Redis runs out
    page = system.client.post("/auth/verify", data={"token": token})
    assert page.status_code == 410 and "expired" in page.get_data(as_text=True)
    assert not system.auth.users.by_email(email).verified


@pytest.mark.parametrize("token", [None, "", "nodot", "a.short", "unknownaccount." + "x" * 43, "a" * 300, "<script>.x"])
def test_a_link_that_is_not_ours_gets_a_400_page(system, token):
    query = "" if token is None else f"?token={token}"
    for response in (
        system.client.get(f"/auth/verify{query}"),
        system.client.post("/auth/verify", data={} if token is None else {"token": token}),
    ):
        assert response.status_code == 400 and response.mimetype == "text/html"
        assert "not valid" in response.get_data(as_text=True)
        assert "<script>" not in response.get_data(as_text=True)


def test_a_wrong_secret_for_a_real_account_is_410_and_spends_no_attempt(system, pending):
    account_id, _ = parse_link_token_reference(token_of(link_of(system, pending)))
    assert system.client.post("/auth/verify", data={"token": f"{account_id}.{'A' * 43}"}).status_code == 410
    code = code_in(mails_to(system, pending)[0])
    assert system.client.post("/auth/confirm", json={"email": pending, "code": code}).status_code == 200


def test_the_pages_are_never_cached(system, pending):
    token = token_of(link_of(system, pending))
    for response in (
        system.client.get(f"/auth/verify?token={token}"),
        system.client.get("/auth/verify?token=bad"),
        system.client.post("/auth/verify", data={"token": token}),
        system.client.post("/auth/verify", data={"token": token}),
    ):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "form-action 'self'" in policy and "frame-ancestors 'none'" in policy
