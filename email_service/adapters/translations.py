"""The emails' languages: gettext message catalogs, and the Jinja i18n extension that reads them.

A template marks its text for translation (``{% trans %}...{% endtrans %}``,
``_("...")``); the catalog of the email's language translates it. Catalogs are
the .po files a translator edits, ``translations/<ll_CC>/LC_MESSAGES/messages.po``
(docs/translations.md); Babel compiles each in memory the first time its
language is used, so there is no compiled file to keep in step with them.

Nothing here fails an email: a message with no translation (or a fuzzy one,
not yet reviewed), a translation whose placeholders do not fit, an unreadable
catalog and an unknown language all fall back to the templates' English.
"""

from __future__ import annotations

import functools
import gettext
import io
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.units import format_unit
from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from common.locales import SOURCE_LOCALE, supported_locale

log = logging.getLogger(__name__)

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"
DOMAIN = "messages"


def install_i18n(environment: Environment) -> None:
    """Let ``environment``'s templates use ``{% trans %}`` and ``_()``; without a locale they render English."""
    environment.add_extension("jinja2.ext.i18n")
    # A paragraph wrapped over several template lines is one message, its lines joined by a space.
    environment.policies["ext.i18n.trimmed"] = True
    environment.install_null_translations(newstyle=True)  # type: ignore[attr-defined]  # added by the extension
    environment.globals["locale"] = SOURCE_LOCALE
    environment.globals["duration"] = functools.partial(describe_duration, locale=SOURCE_LOCALE)


def localized(context: Mapping[str, Any], default_locale: str) -> dict[str, Any]:
    """``context`` with its ``locale`` resolved to a shipped language and that language's
    translation functions, for one render: the environment stays shared by every thread."""
    asked = context.get("locale")
    locale = supported_locale(asked if isinstance(asked, str) else None, default_locale)
    translations = catalog(locale)
    return {
        **context,
        "locale": locale,
        "gettext": _gettext(translations.gettext),
        "ngettext": _ngettext(translations.ngettext),
        "duration": functools.partial(describe_duration, locale=locale),
    }


# Babel formats a unit in 60-200 microseconds, in every code mail; a code's lifetime is one of a few
# settings, so the answers are kept (docs/decisions/cached-durations.md).
@functools.lru_cache(maxsize=256)
def describe_duration(seconds: int, locale: str) -> str:
    """How long a code lives, as the email says it: whole minutes, else seconds ("10 minutos")."""
    if seconds % 60 == 0:
        return format_unit(seconds // 60, "duration-minute", length="long", locale=babel_name(locale))
    return format_unit(seconds, "duration-second", length="long", locale=babel_name(locale))


def babel_name(locale: str) -> str:
    """The catalogs' name of a language: ``pt-BR`` -> ``pt_BR``."""
    return locale.replace("-", "_")


def catalog_path(locale: str) -> Path:
    return TRANSLATIONS / babel_name(locale) / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def catalog(locale: str) -> gettext.NullTranslations:
    """The translations of ``locale``, compiled from its .po file once per process."""
    path = catalog_path(locale)
    try:
        with path.open("rb") as po:
            messages = read_po(po, locale=babel_name(locale), domain=DOMAIN, abort_invalid=True)
        compiled = io.BytesIO()
        write_mo(compiled, messages, use_fuzzy=False)  # a fuzzy entry awaits review: English until then
        compiled.seek(0)
        return gettext.GNUTranslations(compiled)
    except Exception:
        log.exception("message catalog unreadable, emails in this language go out in English", extra={"locale": locale})
        return gettext.NullTranslations()


def _formatted(context: Context, translated: str, original: str, variables: Mapping[str, Any]) -> str:
    # Jinja's newstyle gettext: the message is a %-format of the block's variables, escaped in HTML.
    for text in (translated, original):
        try:
            # The catalog's text is trusted as the template's is; the variables are escaped by Markup's %.
            return (Markup(text) if context.eval_ctx.autoescape else text) % variables  # noqa: S704
        except (KeyError, ValueError, TypeError):
            log.warning("a translation's placeholders do not fit its message, English used", extra={"msgid": original})
    return original


def _gettext(translate: Callable[[str], str]) -> Callable[..., str]:
    @pass_context
    def gettext(context: Context, message: str, **variables: Any) -> str:
        return _formatted(context, translate(message), message, variables)

    return gettext


def _ngettext(translate: Callable[[str, str, int], str]) -> Callable[..., str]:
    @pass_context
    def ngettext(context: Context, singular: str, plural: str, count: int, **variables: Any) -> str:
        variables.setdefault("num", count)
        return _formatted(context, translate(singular, plural, count), singular if count == 1 else plural, variables)

    return ngettext
