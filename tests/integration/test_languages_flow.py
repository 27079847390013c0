"""Emails in the account's language on the real processes: waitress, the worker, RabbitMQ, Redis, the mail sink."""

from __future__ import annotations

import re
import time
import uuid

from tests.integration.test_contract_flow import PASSWORD, confirm, login

SIX_DIGITS = re.compile(r"\b\d{6}\b")


def new_email() -> str:
    return f"lang-{uuid.uuid4().hex[:12]}@example.com"


def register(stack, email, headers=None, **extra):
    return stack.call("POST", "/auth/register", {"email": email, "password": PASSWORD, **extra}, headers)


def me(stack, access_token):
    return stack.call("GET", "/auth/me", headers={"Authorization": f"Bearer {access_token}"})


def bearer(access_token):
    return {"Authorization": f"Bearer {access_token}"}


def mail_with(stack, email, subject, count=1):
    """The latest mail with that subject, once ``count`` mails have arrived; the account's notices (the
    welcome after a confirmation) may come in between, so it waits on for the subject."""
    deadline = time.monotonic() + 15
    mails = stack.sink.wait_for(email, count=count, timeout=15)
    while not any(mail.subject == subject for mail in mails) and time.monotonic() < deadline:
        mails = stack.sink.wait_for(email, count=len(mails) + 1, timeout=max(0.0, deadline - time.monotonic()))
    found = [mail for mail in mails if mail.subject == subject]
    assert found, f"no mail {subject!r} to {email}: {[mail.subject for mail in mails]}"
    return found[-1]


def test_a_pt_br_registration_gets_every_email_in_pt_br_and_me_returns_its_locale(stack):
    email, new = new_email(), new_email()
    status, _, body = register(stack, email, locale="pt-BR")
    assert status == 201, body

    code_mail = mail_with(stack, email, "Confirme seu endereço de e-mail")
    assert code_mail.text.startswith("Olá,")
    assert "Seu código de verificação é:" in code_mail.text and "O código vale por 10 minutos." in code_mail.text
    [code] = SIX_DIGITS.findall(code_mail.text)
    assert code in code_mail.html and '<html lang="pt-BR">' in code_mail.html
    assert "confirme-o no navegador</a>" in code_mail.html

    assert confirm(stack, email, code)[0] == 200
    status, _, tokens = login(stack, email)
    assert status == 200
    status, _, profile = me(stack, tokens["access_token"])
    assert (status, profile["locale"], profile["email"]) == (200, "pt-BR", email)

    # A reset code, a change code and both notices: every email of the account is in its language.
    assert stack.call("POST", "/auth/password/forgot", {"email": email})[0] == 202
    reset_mail = mail_with(stack, email, "Redefina sua senha", count=2)
    assert "Seu código para redefinir a senha é:" in reset_mail.text
    assert "sua senha continua a mesma" in reset_mail.html

    changed = stack.call(
        "POST", "/auth/email/change", {"new_email": new, "password": PASSWORD}, bearer(tokens["access_token"])
    )
    assert changed[0] == 202, changed
    asked = mail_with(stack, email, "Foi pedida a troca do endereço de e-mail da sua conta", count=3)
    assert new in asked.text and f"<strong>{new}</strong>" in asked.html
    change_mail = mail_with(stack, new, "Confirme seu novo endereço de e-mail")
    [change_code] = SIX_DIGITS.findall(change_mail.text)
    confirmed = stack.call("POST", "/auth/email/confirm", {"code": change_code}, bearer(tokens["access_token"]))
    assert confirmed[0] == 200, confirmed
    done = mail_with(stack, email, "O endereço de e-mail da sua conta foi alterado", count=4)
    assert f"O endereço de e-mail da sua conta agora é {new}." in done.text


def test_without_a_locale_accept_language_chooses_and_a_malformed_locale_is_422(stack):
    portuguese, english = new_email(), new_email()
    assert register(stack, portuguese, {"Accept-Language": "fr-CA, pt;q=0.9, en;q=0.8"})[0] == 201
    assert register(stack, english, {"Accept-Language": "de-DE, en;q=0.5"})[0] == 201
    assert mail_with(stack, portuguese, "Confirme seu endereço de e-mail")
    english_mail = mail_with(stack, english, "Confirm your email address")
    assert "It is valid for 10 minutes." in english_mail.text and '<html lang="en">' in english_mail.html

    status, _, body = register(stack, new_email(), locale="pt_BR")
    assert status == 422 and body["error"] == "validation_error" and "locale" in body["fields"]


def test_default_locale_is_the_language_of_who_chose_none(start_stack):
    stack = start_stack(DEFAULT_LOCALE="pt-BR")
    email = new_email()
    assert register(stack, email)[0] == 201
    code_mail = mail_with(stack, email, "Confirme seu endereço de e-mail")
    assert confirm(stack, email, SIX_DIGITS.findall(code_mail.text)[0])[0] == 200
    status, _, tokens = login(stack, email)
    assert status == 200
    assert me(stack, tokens["access_token"])[2]["locale"] == "pt-BR"


def test_a_pt_br_account_signs_in_without_a_password_by_a_code_mailed_in_pt_br(stack):
    email = new_email()
    assert register(stack, email, locale="pt-BR")[0] == 201
    code_mail = mail_with(stack, email, "Confirme seu endereço de e-mail")
    assert confirm(stack, email, SIX_DIGITS.findall(code_mail.text)[0])[0] == 200

    # Asked by address alone: the relay finds the account, and with it the language.
    assert stack.call("POST", "/auth/login/code", {"email": email})[0] == 202
    sign_in_mail = mail_with(stack, email, "Seu código de acesso", count=2)
    assert sign_in_mail.text.startswith("Olá,")
    assert "Seu código de acesso é:" in sign_in_mail.text and "O código vale por 10 minutos." in sign_in_mail.text
    assert '<html lang="pt-BR">' in sign_in_mail.html and "não passe este código a ninguém" in sign_in_mail.html
    [code] = SIX_DIGITS.findall(sign_in_mail.text)
    status, _, tokens = stack.call("POST", "/auth/login/code/verify", {"email": email, "code": code})
    assert status == 200, tokens
    assert me(stack, tokens["access_token"])[2]["email"] == email
