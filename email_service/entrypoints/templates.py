"""``python -m email_service templates check|preview``: every email, in every language, rendered as
the worker would render it, overrides (EMAIL_TEMPLATES_DIR) included.

``check`` exits non-zero if any template (built-in or override) does not
compile, does not render, or sets no subject; at run time such an override
would be logged and replaced by the built-in one. ``preview --out DIR``
writes each email as ``<name>.<locale>.html``, ``.txt`` and ``.eml``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import jinja2

from common.locales import SHIPPED_LOCALES
from email_service.adapters.mailer import TEMPLATES, Mail, SmtpMailer, Templates
from email_service.adapters.translations import localized
from email_service.config import Settings

# A value for everything a template may print (the handlers' contexts); names a template does not use
# are ignored.
SAMPLE_CONTEXT = {
    "code": "123456",
    "link_token": "t" * 43,
    "link": "https://auth.example.com/auth/verify?token=u-1.sample",
    "not_me_link": "https://auth.example.com/auth/not-me?token=u-1.sample",
    "validity_seconds": 600,
    "registered_at": "2026-11-22 03:01 UTC",
    "new_email": "new@example.com",
    "reason": "change",
    "when": "2026-11-22 03:01 UTC",
    "until": "2026-11-22 03:16 UTC",
    "failures": "3",
    "ip": "203.0.113.7",
    "device": "Firefox on Linux",
}
SAMPLE_RECIPIENT = "someone@example.com"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("check", help="render every email in every language; non-zero exit on any error")
    preview = actions.add_parser("preview", help="write every email as .html, .txt and .eml")
    preview.add_argument("--out", type=Path, required=True, help="the folder to write into (made if missing)")


def email_names(folder: Path = TEMPLATES) -> list[str]:
    """Every email the worker can send: a pair in the built-in folder (parts start with ``_``)."""
    return sorted(path.stem for path in folder.glob("*.txt") if not path.stem.startswith("_"))


def check(templates: Templates, mailer: SmtpMailer, out: Callable[[str], None] = print) -> int:
    errors = 0
    known = set(email_names())
    for path in templates.override_files():
        assert templates.overrides is not None
        relative = path.relative_to(templates.overrides)
        locale_ok = len(relative.parts) == 1 or (len(relative.parts) == 2 and relative.parts[0] in SHIPPED_LOCALES)
        if (path.stem not in known and not path.stem.startswith("_")) or not locale_ok:
            out(
                f"ERROR {relative}: replaces no email (names: {', '.join(sorted(known))}; locales: "
                f"{', '.join(SHIPPED_LOCALES)})"
            )
            errors += 1
    for name in email_names():
        for locale in SHIPPED_LOCALES:
            for overridden in (False, True):
                try:
                    mail = render(templates, mailer, name, locale, overridden)
                except (jinja2.TemplateError, LookupError, TypeError, ValueError) as error:
                    which = "override" if overridden else "built-in"
                    out(f"ERROR {name} [{locale}] ({which}): {type(error).__name__}: {error}")
                    errors += 1
                    continue
                if mail is not None:
                    mail.as_bytes()
                    out(f"ok    {name} [{locale}]{' (override)' if overridden else ''}: {mail.subject}")
    out(f"{errors} error(s)")
    return 1 if errors else 0


def render(templates: Templates, mailer: SmtpMailer, name: str, locale: str, overridden: bool) -> Mail | None:
    """The email as the built-in pair or as its override renders it (None: not overridden), with no
    fallback: an error is raised, for ``check`` to report."""
    context = localized({**SAMPLE_CONTEXT, "locale": locale}, mailer.default_locale)
    if not overridden:
        return mailer.compose(name, templates.pair(name), SAMPLE_RECIPIENT, context)
    pair = templates.overridden(name, locale)
    return None if pair is None else mailer.compose(name, pair, SAMPLE_RECIPIENT, context)


def preview(mailer: SmtpMailer, out_dir: Path, out: Callable[[str], None] = print) -> int:
    """Each email as the worker would send it (an override, else the built-in one)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in email_names():
        for locale in SHIPPED_LOCALES:
            mail = mailer.render(name, SAMPLE_RECIPIENT, {**SAMPLE_CONTEXT, "locale": locale})
            (out_dir / f"{name}.{locale}.txt").write_text(mail.body, encoding="utf-8")
            (out_dir / f"{name}.{locale}.html").write_text(mail.html, encoding="utf-8")
            (out_dir / f"{name}.{locale}.eml").write_bytes(mail.data)
    out(f"{len(email_names()) * len(SHIPPED_LOCALES)} emails written to {out_dir}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    templates = Templates(overrides=settings.email_templates_dir)

    class Unsent:
        def deliver(self, mail: Mail) -> None:
            raise AssertionError("templates commands send nothing")

        def close(self) -> None:
            pass

    mailer = SmtpMailer(settings.mail_default_sender, Unsent(), templates, settings.default_locale)
    if args.action == "check":
        return check(templates, mailer)
    return preview(mailer, args.out)
