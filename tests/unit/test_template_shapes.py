"""The built-in mails rendered once per shape and filled in: the same mail as a full render, for any values."""

from __future__ import annotations

import hypothesis
import hypothesis.strategies as st
import pytest

from common.locales import SHIPPED_LOCALES
from email_service.adapters import template_shapes
from email_service.adapters.mailer import SmtpMailer, Templates, render_parts
from email_service.adapters.template_shapes import Shapes, valued_names
from email_service.adapters.translations import localized
from email_service.entrypoints.templates import SAMPLE_CONTEXT, email_names
from tests.fakes import MailOutbox

BUILT_IN = Templates()  # compiled once for the whole module
EVERY_MAIL = [(name, locale) for name in email_names() for locale in SHIPPED_LOCALES]
# Text as users and settings make it: markup characters, quotes, accents, line breaks, nothing at all.
values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40) | st.sampled_from(
    [
        *("", "<b>x</b>", "a&b", "\"quoted\" 'single'", "Zoë Ñandú", "line\nbreak", "%(code)s", "{{ code }}"),
        # The words a template compares a value with: the branches they take must be the full render's.
        *("reset", "change", "expired", "admin"),
    ]
)


def full_render(name: str, context: dict) -> tuple[str, str, str]:
    return render_parts(name, BUILT_IN.pair(name), localized(context, "en"))


@pytest.mark.parametrize(("name", "locale"), EVERY_MAIL)
@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(data=st.data())
def test_a_filled_shape_is_the_full_render_for_any_text_values(name, locale, data):
    mailer = SmtpMailer("no-reply@example.com", MailOutbox(), templates=BUILT_IN)
    mailer.render(name, "a@example.com", {**SAMPLE_CONTEXT, "locale": locale})  # makes the shape
    context = {
        key: (data.draw(values, label=key) if isinstance(value, str) else value)
        for key, value in SAMPLE_CONTEXT.items()
    }
    context["locale"] = locale
    mail = mailer.render(name, "a@example.com", context)
    assert (mail.subject, mail.body, mail.html) == full_render(name, context)


def test_the_built_in_mails_are_filled_in_not_rendered_again():
    renders = []
    shapes = Shapes()
    context = localized({**SAMPLE_CONTEXT, "locale": "en"}, "en")
    pair = BUILT_IN.pair("verify_email")

    def render(values):
        renders.append(values)
        return render_parts("verify_email", pair, values)

    for code in ("111111", "222222", "333333"):
        parts = shapes.parts("verify_email", {**context, "code": code}, render, BUILT_IN.valued_names("verify_email"))
        assert code in parts[1] and code in parts[2]
    # The first mail rendered in full, and once with markers to make its shape; the others filled in.
    assert len(renders) == 2


def test_a_template_that_changes_a_value_is_rendered_in_full_each_time(tmp_path):
    (tmp_path / "shouting.txt").write_text('{% set subject = "Hi " ~ name|upper %}{{ code|reverse }}')
    (tmp_path / "shouting.html").write_text("<p>{{ code[:3] }}</p>")
    mailer = SmtpMailer("no-reply@example.com", MailOutbox(), templates=Templates(folder=tmp_path))
    for code, name in (("123456", "ada"), ("654321", "bob")):
        mail = mailer.render("shouting", "a@example.com", {"code": code, "name": name})
        assert (mail.subject, mail.body, mail.html) == (f"Hi {name.upper()}", code[::-1], f"<p>{code[:3]}</p>")


def test_an_empty_value_gets_a_shape_of_its_own(tmp_path):
    (tmp_path / "maybe.txt").write_text(
        '{% set subject = "S" %}{% if link %}open {{ link }}{% else %}no link{% endif %}'
    )
    (tmp_path / "maybe.html").write_text("{% if link %}<a href='{{ link }}'>open</a>{% endif %}")
    mailer = SmtpMailer("no-reply@example.com", MailOutbox(), templates=Templates(folder=tmp_path))
    for link in ("https://x.example/?a=1&b=2", "", "https://y.example/"):
        mail = mailer.render("maybe", "a@example.com", {"link": link})
        expected_html = f"<a href='{link.replace('&', '&amp;')}'>open</a>" if link else ""
        assert (mail.body, mail.html) == ((f"open {link}" if link else "no link"), expected_html)


def test_a_context_with_a_value_of_another_kind_is_rendered_in_full():
    shapes = Shapes()
    calls = []
    for _ in range(2):
        shapes.parts(
            "t", {"items": ["a", "b"], "code": "1"}, lambda values: calls.append(1) or ("s", "t", "h"), frozenset()
        )
    assert len(calls) == 2


def test_past_its_limit_no_shape_is_kept():
    shapes = Shapes(max_shapes=1)
    calls = []

    def render(values):
        calls.append(values)
        return ("s", values["code"], values["code"])

    for lifetime in (600, 900, 900):
        shapes.parts("t", {"code": "1", "validity_seconds": lifetime}, render, frozenset())
    # 600's shape took the one place: each 900 is rendered in full, with no shape made for it.
    assert len(calls) == 2 + 1 + 1


@pytest.mark.parametrize("name", ["password_changed", "account_unlocked"])
@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
def test_a_value_a_template_compares_is_part_of_the_shape(name, locale):
    mailer = SmtpMailer("no-reply@example.com", MailOutbox(), templates=BUILT_IN)
    for reason in ("change", "reset", "expired", "reset"):
        context = {**SAMPLE_CONTEXT, "reason": reason, "locale": locale}
        mail = mailer.render(name, "a@example.com", context)
        assert (mail.subject, mail.body, mail.html) == full_render(name, context)


def test_the_values_a_template_uses_whole_are_read_off_its_syntax(tmp_path):
    (tmp_path / "t.txt").write_text(
        '{{ printed }} {% if tested %}x{% endif %} {% if kind == "a" %}a{% endif %} {{ shouted|upper }}'
        ' {{ gettext("Hi %(who)s", who=who) }} {{ duration(lifetime) }} {% include "part.txt" %}'
    )
    (tmp_path / "part.txt").write_text("{{ piece[:2] }} {{ plain }}")
    (tmp_path / "dynamic.txt").write_text("{% include which %}")
    environment = Templates(folder=tmp_path).environment
    assert valued_names(environment, ["t.txt"]) == {"kind", "shouted", "lifetime", "piece"}
    assert valued_names(environment, ["dynamic.txt"]) is None


def test_a_value_that_holds_another_holes_marker_is_printed_as_it_is(tmp_path):
    (tmp_path / "two.txt").write_text('{% set subject = "S" %}{{ first }}|{{ second }}')
    (tmp_path / "two.html").write_text("<p>{{ first }}|{{ second }}</p>")
    mailer = SmtpMailer("no-reply@example.com", MailOutbox(), templates=Templates(folder=tmp_path))
    mailer.render("two", "a@example.com", {"first": "a", "second": "b"})
    sneaky = f"{template_shapes._MARKER}1x"
    mail = mailer.render("two", "a@example.com", {"first": sneaky, "second": "b"})
    assert (mail.body, mail.html) == (f"{sneaky}|b", f"<p>{sneaky}|b</p>")
