"""The account's language: chosen at registration, stored, returned by /auth/me, carried to every email; on fakes."""

from __future__ import annotations

import pytest

from auth_service.config import Settings as AuthSettings
from common.locales import choose_locale, is_language_tag, shipped_match, supported_locale
from common.messaging.envelope import MalformedMessage, Outgoing
from common.messaging.messages import CodeRequested, NoticeRequested, Purpose
from common.settings import SettingsError
from email_service.config import Settings as WorkerSettings
from tests.fakes import as_delivered
from tests.unit.conftest import BASE_ENV
from tests.unit.test_lifecycle import change_email, code_in, confirm_email, forgot, mails_to
from tests.unit.test_sessions import PASSWORD, login, me
from tests.unit.test_sign_in import ask_code, challenged, next_code_allowed, set_mfa, verify_challenge, verify_code

PORTUGUESE_SUBJECT = "Confirme seu endereço de e-mail"
ENGLISH_SUBJECT = "Confirm your email address"


# --- the choice, pure ---


@pytest.mark.parametrize(
    "tag",
    ["en", "pt-BR", "PT-br", "zh-Hant-TW", "es-419", "sl-rozaj-biske", "de-CH-1901", "en-US-u-ca-gregory",
     "x-whatever", "en-x-private", "i-klingon", "zh-min-nan", "yue-HK", "zh-cmn-Hans-CN"],
)  # fmt: skip
def test_well_formed_bcp47_tags_are_taken(tag):
    assert is_language_tag(tag)


@pytest.mark.parametrize(
    "tag",
    ["", "pt_BR", "e", "portuguese", "en-", "-en", "en--US", "en-US-", "en US", "123", "en-a", "en-x", "pt-BRR-",
     "ç", "en\n", "a" * 9, "en-" + "x-" * 40 + "a", "*", "en-US;q=0.5", "<script>"],
)  # fmt: skip
def test_anything_else_is_not_a_language_tag(tag):
    assert not is_language_tag(tag)


@pytest.mark.parametrize(
    ("tag", "served_by"),
    [
        ("en", "en"),
        ("EN-us", "en"),
        ("en-GB-oxendict", "en"),
        ("pt-BR", "pt-BR"),
        ("pt-br", "pt-BR"),
        ("pt", "pt-BR"),
        ("pt-PT", "pt-BR"),  # the same language from another region reads better than English
        ("pt-Latn-BR-x-app", "pt-BR"),
        ("fr", None),
        ("x-pt", None),
        ("pt_BR", None),
    ],
)
def test_a_tag_is_served_by_its_shipped_language_or_by_none(tag, served_by):
    assert shipped_match(tag) == served_by


def test_the_first_preference_a_shipped_language_serves_wins_else_the_default():
    assert choose_locale(["fr-CA", "pt;q=0.9", "pt", "en"], "en") == "pt-BR"
    assert choose_locale(["de", "en-AU", "pt-BR"], "pt-BR") == "en"
    assert choose_locale(["de", "*", "en_US", "!!"], "pt-BR") == "pt-BR"
    assert choose_locale([], "en") == "en"


def test_the_worker_writes_an_unknown_or_missing_language_in_the_default():
    assert supported_locale("pt-br", "en") == "pt-BR"
    assert supported_locale("fr", "pt-BR") == "pt-BR"
    assert supported_locale("not a tag", "en") == "en"
    assert supported_locale(None, "pt-BR") == "pt-BR"


def test_default_locale_is_a_shipped_language_written_as_the_catalogs_name_it():
    assert AuthSettings.from_env(BASE_ENV).default_locale == "en"
    assert WorkerSettings.from_env({**BASE_ENV, "DEFAULT_LOCALE": " pt-br "}).default_locale == "pt-BR"
    for refused in ("fr", "pt_BR", "portuguese"):
        with pytest.raises(SettingsError, match="DEFAULT_LOCALE"):
            AuthSettings.from_env({**BASE_ENV, "DEFAULT_LOCALE": refused})


# --- registration: stored, returned, carried ---


def register(system, email, headers=None, **extra):
    body = {"email": email, "password": PASSWORD, **extra}
    return system.client.post("/auth/register", json=body, headers=headers or {})


def code_request_to(system, email) -> dict:
    queue = system.auth_settings.account_creation_queue
    [message] = [m for m in system.broker.sent_to(queue) if m.body["email"] == email]
    return message.body


def signed_in(system, email, **extra) -> dict:
    assert register(system, email, **extra).status_code == 201
    [code] = system.codes_for(email)
    assert system.client.post("/auth/confirm", json={"email": email, "code": code}).status_code == 200
    return login(system, email)


def test_a_registration_in_pt_br_is_stored_mailed_and_returned_in_pt_br(system, unique_email):
    email = unique_email()
    tokens = signed_in(system, email, locale="pt-br")
    assert system.auth.users.by_email(email).locale == "pt-BR"
    assert code_request_to(system, email)["locale"] == "pt-BR"
    mail = mails_to(system, email)[0]  # the code; the welcome follows
    assert mail.subject == PORTUGUESE_SUBJECT
    assert "Seu código de verificação é:" in mail.body and "10 minutos" in mail.body
    assert 'lang="pt-BR"' in mail.html and "confirme-o no navegador" in mail.html
    assert me(system, tokens["access_token"]).json["locale"] == "pt-BR"


@pytest.mark.parametrize(
    ("body_locale", "accept_language", "chosen"),
    [
        (None, "fr-CA, pt;q=0.9, en;q=0.8", "pt-BR"),
        (None, "pt-BR;q=0, en-GB;q=0.5", "en"),  # q=0: refused
        (None, "de, *;q=0.5", "en"),  # nothing served: DEFAULT_LOCALE
        (None, None, "en"),
        ("en", "pt-BR", "en"),  # the body's choice first
        ("fr", "pt-BR, en;q=0.5", "pt-BR"),  # a language not shipped: the header decides
        ("fr", None, "en"),
    ],
)
def test_the_locale_is_the_body_s_then_accept_language_s_then_the_default(
    system, unique_email, body_locale, accept_language, chosen
):
    email = unique_email()
    extra = {} if body_locale is None else {"locale": body_locale}
    headers = {} if accept_language is None else {"Accept-Language": accept_language}
    assert register(system, email, headers, **extra).status_code == 201
    assert system.auth.users.by_email(email).locale == chosen
    assert code_request_to(system, email)["locale"] == chosen


def test_default_locale_names_the_language_of_who_chose_none(make_system, unique_email):
    system = make_system({"DEFAULT_LOCALE": "pt-BR"})
    email = unique_email()
    tokens = signed_in(system, email, headers={"Accept-Language": "de-DE"})
    assert me(system, tokens["access_token"]).json["locale"] == "pt-BR"
    assert mails_to(system, email)[0].subject == PORTUGUESE_SUBJECT


@pytest.mark.parametrize("locale", ["", "pt_BR", "Portuguese", "en-", 7, True, ["pt-BR"], {"tag": "en"}, "e" * 65])
def test_a_locale_that_is_not_a_bcp47_tag_is_422_naming_the_field(system, unique_email, locale):
    email = unique_email()
    response = register(system, email, locale=locale)
    assert response.status_code == 422, response.json
    assert response.json["error"] == "validation_error" and list(response.json["fields"]) == ["locale"]
    assert system.auth.users.by_email(email) is None


def test_a_null_locale_is_no_choice(system, unique_email):
    email = unique_email()
    assert register(system, email, {"Accept-Language": "pt"}, locale=None).status_code == 201
    assert system.auth.users.by_email(email).locale == "pt-BR"


def test_an_unreadable_accept_language_is_no_preference_not_an_error(system, unique_email):
    email = unique_email()
    response = register(system, email, {"Accept-Language": ";;;q=2, \u00e7\u00e7, en_US;q=abc"})
    assert response.status_code == 201
    assert system.auth.users.by_email(email).locale == "en"


def test_registering_a_pending_address_again_takes_the_new_language(system, unique_email):
    email = unique_email()
    assert register(system, email, locale="en").status_code == 201
    assert register(system, email, locale="pt-BR").status_code == 201
    assert system.auth.users.by_email(email).locale == "pt-BR"
    first, second = mails_to(system, email)
    assert (first.subject, second.subject) == (ENGLISH_SUBJECT, PORTUGUESE_SUBJECT)


def test_a_resent_code_is_in_the_account_s_language(system, unique_email):
    email = unique_email()
    assert register(system, email, locale="pt-BR").status_code == 201
    system.cooldown_clock.advance(3600)
    assert system.client.post("/auth/resend-code", json={"email": email}).status_code == 202
    assert [mail.subject for mail in mails_to(system, email)] == [PORTUGUESE_SUBJECT] * 2


def test_reset_and_address_change_mails_and_notices_are_in_the_account_s_language(system, unique_email):
    old, new = unique_email(), unique_email()
    tokens = signed_in(system, old, locale="pt-BR")
    assert forgot(system, old).status_code == 202
    [reset_mail] = mails_to(system, old, "Redefina sua senha")
    assert "O código vale por 10 minutos" in reset_mail.body and code_in(reset_mail)

    assert change_email(system, tokens["access_token"], new).status_code == 202
    [asked] = mails_to(system, old, "Foi pedida a troca")
    assert new in asked.body and f"<strong>{new}</strong>" in asked.html
    [code_mail] = mails_to(system, new, "Confirme seu novo endereço")
    assert confirm_email(system, tokens["access_token"], code_in(code_mail)).status_code == 200
    [done] = mails_to(system, old, "foi alterado")
    assert "O endereço de e-mail da sua conta agora é" in done.body
    sent = system.broker.sent_to(system.auth_settings.account_creation_queue)
    assert {message.body["locale"] for message in sent} == {"pt-BR"}


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("pt-BR", {"code": "Seu código de acesso", "valid": "O código vale por 10 minutos", "on": "foram ativados",
                   "on_body": "dispositivo novo", "off": "foram desativados", "off_body": "não exige mais"}),
        ("en", {"code": "Your sign-in code", "valid": "It is valid for 10 minutes", "on": "turned on",
                "on_body": "new device", "off": "turned off", "off_body": "no longer asks"}),
    ],
)  # fmt: skip
def test_sign_in_codes_and_second_factor_notices_are_in_the_account_s_language(system, unique_email, locale, words):
    email = unique_email()
    tokens = signed_in(system, email, locale=locale)
    assert set_mfa(system, tokens["access_token"], True).status_code == 200
    [on] = mails_to(system, email, words["on"])
    assert words["on_body"] in on.body and f'<html lang="{locale}">' in on.html

    challenge = challenged(system, email)
    [second_factor] = mails_to(system, email, words["code"])
    assert words["valid"] in second_factor.body and words["valid"] in second_factor.html
    assert f'<html lang="{locale}">' in second_factor.html
    assert verify_challenge(system, challenge, code_in(second_factor)).status_code == 200

    assert set_mfa(system, tokens["access_token"], False).status_code == 200
    [off] = mails_to(system, email, words["off"])
    assert words["off_body"] in off.body and f'<html lang="{locale}">' in off.html

    # Without a password (only with the factor off): asked by address alone, so the relay finds the
    # account and its language.
    next_code_allowed(system)
    assert ask_code(system, email).status_code == 202
    first, passwordless = mails_to(system, email, words["code"])
    assert words["valid"] in passwordless.body and code_in(passwordless) != code_in(first)
    assert verify_code(system, email, code_in(passwordless)).status_code == 200
    sent = system.broker.sent_to(system.auth_settings.account_creation_queue)
    assert {message.body["locale"] for message in sent} == {locale}


def test_an_account_stored_before_languages_reads_the_default_and_is_mailed_in_it(make_system, unique_email):
    system = make_system({"DEFAULT_LOCALE": "pt-BR"})
    email = unique_email()
    tokens = signed_in(system, email, locale="en")
    system.auth.users._users.update_one({"email": email}, {"$unset": {"locale": ""}})
    assert system.auth.users.by_email(email).locale is None
    assert me(system, tokens["access_token"]).json["locale"] == "pt-BR"
    assert forgot(system, email).status_code == 202
    assert mails_to(system, email, "Redefina sua senha")


# --- the worker: requests with and without a language ---


def test_a_code_request_queued_before_languages_is_mailed_in_the_default(make_system, unique_email):
    system = make_system({"DEFAULT_LOCALE": "pt-BR"})
    email = unique_email()
    legacy = Outgoing(
        type="account.registered",
        body={"user_id": "u1", "email": email, "requested_at": system.clock()},
        message_id="legacy-1",
    )
    system.broker.publish(system.worker_settings.account_creation_queue, legacy)
    mail = mails_to(system, email)[0]  # the code; the welcome follows
    assert mail.subject == PORTUGUESE_SUBJECT


def test_the_worker_reads_the_locale_of_code_requests_and_notices_and_refuses_a_malformed_one():
    request = CodeRequested(Purpose.VERIFY_EMAIL, "u1", "a@example.com", 1.0, locale="pt-BR")
    assert CodeRequested.parse(as_delivered(request.outgoing(message_id="m1"))).locale == "pt-BR"
    notice = NoticeRequested("email_changed", "a@example.com", {"new_email": "b@example.com"}, locale="pt-BR")
    assert NoticeRequested.parse(as_delivered(notice.outgoing(message_id="m2"))).locale == "pt-BR"
    for bad in (7, "x" * 65):
        body = {**request.body(), "locale": bad}
        with pytest.raises(MalformedMessage, match="locale"):
            CodeRequested.parse(as_delivered(Outgoing(type=CodeRequested.TYPE, body=body, message_id="m3")))
