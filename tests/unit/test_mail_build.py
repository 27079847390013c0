"""Every mail the worker builds, in every language: its headers and parts as a mail reader parses
them, its DKIM signature as a receiver checks it, and operator templates replacing built-in ones."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import logging
import smtplib

import dkim
import hypothesis
import hypothesis.strategies
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from common.locales import SHIPPED_LOCALES
from email_service.adapters.dkim_signer import DkimSigner, dns_record
from email_service.adapters.mailer import PLAIN_ADDRESS, SmtpMailer, Templates, envelope_address
from email_service.entrypoints.templates import SAMPLE_CONTEXT, check, email_names, preview
from tests.fakes import MailOutbox

SENDER = "no-reply@mail.example.com"
EVERY_MAIL = [(name, locale) for name in email_names() for locale in SHIPPED_LOCALES]


def build(name: str, locale: str, templates: Templates | None = None):
    mailer = SmtpMailer(SENDER, MailOutbox(), templates=templates)
    return mailer.render(name, "someone@example.com", {**SAMPLE_CONTEXT, "locale": locale})


@pytest.mark.parametrize(("name", "locale"), EVERY_MAIL)
def test_every_mail_parses_with_its_headers_and_both_parts(name, locale):
    built = build(name, locale)
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(built.data)
    assert not message.defects
    assert email.utils.parsedate_to_datetime(message["Date"]).tzinfo is not None
    message_id = message["Message-ID"]
    assert message_id.startswith("<") and message_id.endswith("@mail.example.com>")
    assert message["MIME-Version"] == "1.0"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["From"] == SENDER and message["To"] == "someone@example.com"
    assert str(message["Subject"]) == built.subject
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" and not part.defects for part in parts)
    assert lines(parts[0].get_content()) == lines(built.body)
    assert lines(parts[1].get_content()) == lines(built.html)


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


def _key(kind: str) -> bytes:
    key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def signing(request):
    pem = _key(request.param)
    return DkimSigner("mail.example.com", "s2026", pem), dns_record(pem).encode(), request.param


@pytest.mark.parametrize(("name", "locale"), EVERY_MAIL)
def test_every_mail_carries_a_dkim_signature_that_verifies(signing, name, locale):
    signer, record, kind = signing
    signed = signer(build(name, locale).data)
    asked = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record

    assert dkim.verify(signed, dnsfunc=dns)
    assert asked == [b"s2026._domainkey.mail.example.com."]
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    assert "c=relaxed/relaxed" in header
    assert ("a=rsa-sha256" if kind == "rsa" else "a=ed25519-sha256") in header
    signed_headers = header.split(" h=", 1)[1].split(";", 1)[0].replace("\r\n", "").replace(" ", "").split(":")
    assert {"from", "to", "subject", "date", "message-id", "mime-version"} <= set(signed_headers)
    tampered = signed.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_a_short_rsa_key_is_refused():
    pem = rsa.generate_private_key(65537, 1024).private_bytes(  # noqa: S505 (the key refused)
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="2048"):
        DkimSigner("example.com", "s", pem)


# --- templates an operator overrides ---------------------------------------------------------

GOOD_TEXT = """{% set subject = "ACME: your code" -%}
ACME code {{ code }}, valid for {{ duration(validity_seconds) }}.
"""
GOOD_HTML = "<p>ACME code <b>{{ code }}</b></p>\n"
BROKEN_TEXT = "{% set subject = 'Broken' %}{% if code %}never closed\n"


@pytest.fixture
def overrides(tmp_path):
    (tmp_path / "pt-BR").mkdir()
    (tmp_path / "pt-BR" / "verify_email.txt").write_text(GOOD_TEXT)
    (tmp_path / "pt-BR" / "verify_email.html").write_text(GOOD_HTML)
    (tmp_path / "welcome.txt").write_text(BROKEN_TEXT)
    return tmp_path


def test_check_reports_the_broken_override_and_passes_without_it(overrides):
    templates = Templates(overrides=overrides)
    lines: list[str] = []
    assert check(templates, SmtpMailer(SENDER, MailOutbox(), templates), lines.append) == 1
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == len(SHIPPED_LOCALES) and all("welcome" in line and "override" in line for line in errors)
    assert any(line.startswith("ok    verify_email [pt-BR] (override): ACME: your code") for line in lines)
    (overrides / "welcome.txt").unlink()
    lines.clear()
    templates = Templates(overrides=overrides)
    assert check(templates, SmtpMailer(SENDER, MailOutbox(), templates), lines.append) == 0


def test_an_override_replaces_one_locale_and_the_built_in_serves_the_rest(overrides):
    templates = Templates(overrides=overrides)
    branded = build("verify_email", "pt-BR", templates)
    assert branded.subject == "ACME: your code"
    assert "ACME code 123456, valid for 10 minutos." in branded.body and "<b>123456</b>" in branded.html
    assert build("verify_email", "en", templates).subject == build("verify_email", "en").subject


def test_a_broken_override_at_run_time_falls_back_to_the_built_in_with_an_error_logged(overrides, caplog):
    templates = Templates(overrides=overrides)
    with caplog.at_level(logging.ERROR):
        sent = build("welcome", "en", templates)
    assert sent.subject == build("welcome", "en").subject
    assert any("template override broken" in record.getMessage() for record in caplog.records)


def test_an_override_that_replaces_nothing_fails_check(tmp_path):
    (tmp_path / "welcom.txt").write_text(GOOD_TEXT)
    templates = Templates(overrides=tmp_path)
    lines: list[str] = []
    assert check(templates, SmtpMailer(SENDER, MailOutbox(), templates), lines.append) == 1
    assert any("welcom.txt: replaces no email" in line for line in lines)


def test_preview_writes_each_mail_as_html_text_and_eml(overrides, tmp_path_factory):
    out = tmp_path_factory.mktemp("preview")
    templates = Templates(overrides=overrides)
    assert preview(SmtpMailer(SENDER, MailOutbox(), templates), out, lambda line: None) == 0
    for name, locale in EVERY_MAIL:
        for suffix in ("html", "txt", "eml"):
            assert (out / f"{name}.{locale}.{suffix}").stat().st_size > 0
    assert "ACME code 123456" in (out / "verify_email.pt-BR.txt").read_text()
    assert b"Auto-Submitted: auto-generated" in (out / "welcome.en.eml").read_bytes()


def test_the_templates_commands_run_as_the_operator_runs_them(overrides, tmp_path_factory):
    import os
    import subprocess
    import sys

    env = {**os.environ, "APP_ENV": "development", "EMAIL_TEMPLATES_DIR": str(overrides)}
    command = [sys.executable, "-m", "email_service", "templates"]
    broken = subprocess.run([*command, "check"], env=env, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "ERROR welcome [en] (override)" in broken.stdout
    (overrides / "welcome.txt").unlink()
    assert subprocess.run([*command, "check"], env=env, capture_output=True, timeout=60).returncode == 0
    out = tmp_path_factory.mktemp("cli-preview")
    done = subprocess.run([*command, "preview", "--out", str(out)], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0 and (out / "verify_email.pt-BR.eml").exists()


# --- the envelope: MAIL FROM and RCPT TO carry what smtplib would have sent


@hypothesis.settings(max_examples=2000)
@hypothesis.given(
    hypothesis.strategies.from_regex(PLAIN_ADDRESS, fullmatch=True)
    | hypothesis.strategies.text()
    | hypothesis.strategies.sampled_from(
        ["Name <a@b.example>", '"quoted"@b.example', "a..b@c", "é@x.fr", "<>", " a@b ", "a@b (comment)", "a@[10.0.0.1]"]
    )
)
def test_the_envelope_address_is_smtplibs_own_for_every_address(address):
    assert envelope_address(address) == smtplib.quoteaddr(address)
