"""Every email in every shipped language: the templates' text is all translatable, and all translated.

These tests read email_service/templates as it is: a template added in English
only (or a message added without its pt-BR translation) fails them, naming the
template and the message. `make translations` brings the new messages into the
catalogs; docs/translations.md says the rest.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS
from babel.messages.pofile import read_po
from jinja2 import ChainableUndefined
from jinja2.ext import babel_extract

from common.locales import SHIPPED_LOCALES, SOURCE_LOCALE
from email_service.adapters import translations
from email_service.adapters.mailer import SmtpMailer
from email_service.adapters.translations import _gettext, catalog_path, describe_duration, localized
from email_service.config import Settings
from tests.fakes import MailOutbox
from tests.unit.conftest import BASE_ENV

TEMPLATES = Path(translations.__file__).resolve().parent.parent / "templates"
# Every email is a pair; names starting with "_" would be pieces included by others.
EMAILS = sorted({path.stem for path in TEMPLATES.glob("*.txt") if not path.stem.startswith("_")})
TEMPLATE_FILES = sorted(path.name for path in TEMPLATES.iterdir() if path.suffix in (".txt", ".html"))
TRANSLATED = [locale for locale in SHIPPED_LOCALES if locale != SOURCE_LOCALE]
# A value for everything a template may print; names a template does not use are ignored.
SAMPLE_CONTEXT = {
    "code": "123456",
    "link_token": "t" * 43,
    "link": "http://localhost:8000/auth/verify?token=abc.def",
    "validity_seconds": 600,
    "registered_at": "2026-11-22 03:01 UTC",
    "new_email": "new@example.com",
}
LETTER = re.compile(r"[^\W\d_]")


def mailer(default_locale: str = "en") -> SmtpMailer:
    settings = Settings.from_env({**BASE_ENV, "DEFAULT_LOCALE": default_locale})
    return SmtpMailer(settings.mail_default_sender, MailOutbox(), default_locale=settings.default_locale)


def render(template: str, locale: str | None, default_locale: str = "en", **context):
    return mailer(default_locale).render(template, "a@example.com", {**SAMPLE_CONTEXT, "locale": locale, **context})


def messages_of(template_file: str) -> list[str]:
    """The msgids of a template, as `make translations` extracts them (babel.cfg's options)."""
    with (TEMPLATES / template_file).open("rb") as source:
        found = babel_extract(
            source, list(DEFAULT_KEYWORDS), [], {"newstyle_gettext": "true", "trimmed": "true", "silent": "false"}
        )
        # A message is its text, or (text, None) from a {% trans %} with values, or (singular, plural).
        return [
            message if isinstance(message, str) else str(next(iter(message or ("",)))) for _, _, message, _ in found
        ]


def test_there_are_emails_to_check():
    assert {"verify_email", "reset_password", "change_email", "email_changed"} <= set(EMAILS)
    assert all((TEMPLATES / f"{email}.html").exists() for email in EMAILS)


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
@pytest.mark.parametrize("template", EMAILS)
def test_every_email_renders_in_every_shipped_language(template, locale):
    message = render(template, locale)
    english = render(template, "en")
    assert message.subject and message.body.strip() and message.html.strip()
    if locale != SOURCE_LOCALE:
        assert message.subject != english.subject, "the subject is not translated"
        assert message.body != english.body and message.html != english.html


@pytest.mark.parametrize("template", EMAILS)
def test_every_html_part_declares_its_language(template):
    # Screen readers and mail clients pick pronunciation and hyphenation by it.
    assert '<html lang="pt-BR">' in render(template, "pt-BR").html


@pytest.mark.parametrize("template_file", TEMPLATE_FILES)
def test_every_word_of_every_template_goes_through_the_catalog(template_file):
    """Rendered with every message blanked out and every value empty, a template prints no word
    of its own: all its text is inside {% trans %} or _(), where a catalog can translate it."""
    environment = mailer().templates.environment.overlay(undefined=ChainableUndefined)
    blanks = localized({}, "en")
    blanks["gettext"] = _gettext(lambda message: "")
    blanks["ngettext"] = lambda *args, **kwargs: ""
    blanks["duration"] = lambda seconds: ""
    rendered = environment.get_template(template_file).render({**blanks, "locale": ""})
    visible = re.sub(r"<[^>]*>|&[a-z]+;|&#\d+;", " ", rendered)
    assert not LETTER.search(visible), f"text outside the catalog in {template_file}: {visible.strip()[:200]!r}"


@pytest.mark.parametrize("locale", TRANSLATED)
@pytest.mark.parametrize("template_file", TEMPLATE_FILES)
def test_every_message_of_every_template_is_translated(template_file, locale):
    with catalog_path(locale).open("rb") as po:
        catalog = read_po(po)
    messages = messages_of(template_file)
    assert messages, f"{template_file} has no translatable text"
    untranslated = [m for m in messages if m not in catalog or not catalog[m].string or catalog[m].fuzzy]
    assert untranslated == [], f"{locale} lacks (or has only fuzzy) translations of these messages: {untranslated}"


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
def test_every_catalog_keeps_the_placeholders_of_its_messages(locale):
    with catalog_path(locale).open("rb") as po:
        catalog = read_po(po)
    problems = [(message.id, [str(error) for error in errors]) for message, errors in catalog.check()]
    assert problems == []


def test_the_pt_br_verification_email_reads_in_portuguese_with_the_code_standing_alone():
    message = render("verify_email", "pt-BR")
    assert message.subject == "Confirme seu endereço de e-mail"
    assert message.body.startswith("Olá,")
    assert re.findall(r"\b\d{6}\b", message.body) == ["123456"]
    assert "O código vale por 10 minutos." in message.body and "2026-11-22 03:01 UTC" in message.body
    assert '<a href="http://localhost:8000/auth/verify?token=abc.def">confirme-o no navegador</a>' in message.html


def test_values_are_escaped_in_the_html_of_a_translated_email():
    message = render("email_changed", "pt-BR", new_email="<b>x</b>@example.com")
    assert "<strong>&lt;b&gt;x&lt;/b&gt;@example.com</strong>" in message.html
    assert "<b>x</b>@example.com" in message.body  # plain text is not HTML


@pytest.mark.parametrize("locale", [None, "fr", "xx-YY", "not a tag", "pt_BR", 7, ["pt-BR"]])
def test_an_unknown_or_missing_language_is_written_in_default_locale(locale):
    assert render("verify_email", locale, default_locale="pt-BR").subject == "Confirme seu endereço de e-mail"
    assert render("verify_email", locale, default_locale="en").subject == "Confirm your email address"


def test_a_message_with_no_translation_falls_back_to_english():
    environment = mailer().templates.environment
    template = environment.from_string('{{ _("Hello,") }} {{ _("A message no catalog has") }}')
    assert template.render(localized({"locale": "pt-BR"}, "en")) == "Olá, A message no catalog has"


def test_a_translation_whose_placeholders_do_not_fit_falls_back_to_english():
    environment = mailer().templates.environment
    template = environment.from_string("{% trans %}Valid for {{ validity }}.{% endtrans %}")
    context = {**localized({"locale": "pt-BR"}, "en"), "validity": "10 minutos"}
    context["gettext"] = _gettext(lambda message: "Vale por %(validade)s e %(d)")
    assert template.render(context) == "Valid for 10 minutos."


def test_fuzzy_and_unreadable_catalogs_fall_back_to_english(tmp_path, monkeypatch):
    catalogs = tmp_path / "translations"
    for locale, text in (
        ("pt_BR", '#, fuzzy\nmsgid "Hello,"\nmsgstr "Olá,"\n\nmsgid "Reset your password"\nmsgstr "Redefina"\n'),
        ("es", 'msgid "Hello,"\nmsgstr "Hola"\nnot a line of a catalog\n'),
    ):
        (catalogs / locale / "LC_MESSAGES").mkdir(parents=True)
        (catalogs / locale / "LC_MESSAGES" / "messages.po").write_text(text, encoding="utf-8")
    monkeypatch.setattr(translations, "TRANSLATIONS", catalogs)
    compile_catalog = translations.catalog.__wrapped__  # past the per-process cache
    portuguese = compile_catalog("pt-BR")
    assert portuguese.gettext("Hello,") == "Hello,"  # fuzzy: awaiting review
    assert portuguese.gettext("Reset your password") == "Redefina"
    assert compile_catalog("es").gettext("Hello,") == "Hello,"
    assert compile_catalog("de").gettext("Hello,") == "Hello,"  # no catalog at all


@pytest.mark.parametrize(
    ("seconds", "locale", "text"),
    [
        (600, "en", "10 minutes"),
        (60, "en", "1 minute"),
        (90, "en", "90 seconds"),
        (1, "en", "1 second"),
        (600, "pt-BR", "10 minutos"),
        (60, "pt-BR", "1 minuto"),
        (5, "pt-BR", "5 segundos"),
    ],
)
def test_the_validity_is_worded_in_the_email_s_language(seconds, locale, text):
    assert describe_duration(seconds, locale) == text


def test_the_pot_file_holds_every_message_of_the_templates():
    """`make translations` was run after the templates last changed (translators start from messages.pot)."""
    with (catalog_path("en").parent.parent.parent / "messages.pot").open("rb") as pot:
        template_catalog = read_po(io.BytesIO(pot.read()))
    extracted = {message for template_file in TEMPLATE_FILES for message in messages_of(template_file)}
    assert sorted(extracted - {message.id for message in template_catalog if message.id}) == []
