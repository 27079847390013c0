"""The languages emails are written in, and how a user's language is chosen among them.

Languages are BCP 47 tags (RFC 5646), such as ``pt-BR``. Auth chooses one at
registration (``choose_locale``) and stores it on the account; the worker
renders every email of the account in it (``supported_locale`` is its guard
for a tag it does not ship, from an older or newer auth). Both sides read this
one list, so a language is added here and in the worker's catalogs
(email_service/translations, docs/translations.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The languages with a complete message catalog; the first is the templates' own language.
SHIPPED_LOCALES: tuple[str, ...] = ("en", "pt-BR")
SOURCE_LOCALE = SHIPPED_LOCALES[0]
# RFC 5646 (4.4.1) asks for room for tags of at least 35 characters; past this bound a tag is
# only private-use subtags, and a longer one is refused rather than stored.
LOCALE_MAX_LENGTH = 64

# The syntax of a well-formed tag (RFC 5646, 2.1): language, script, region, variants,
# extensions, private use; or a private-use tag alone.
_LANGUAGE_TAG = re.compile(
    r"""
    (?:
        (?:[a-z]{2,3}(?:-[a-z]{3}){0,3} | [a-z]{4} | [a-z]{5,8})  # language (with extended subtags)
        (?:-[a-z]{4})?                                          # script
        (?:-(?:[a-z]{2}|[0-9]{3}))?                             # region
        (?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*                # variants
        (?:-[a-wyz0-9](?:-[a-z0-9]{2,8})+)*                     # extensions
        (?:-x(?:-[a-z0-9]{1,8})+)?                              # private use
    |
        x(?:-[a-z0-9]{1,8})+                                    # a private-use tag
    )
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)
# Tags registered before RFC 4646 that the syntax above does not describe (RFC 5646, 2.2.8).
_GRANDFATHERED = frozenset(
    tag.lower()
    for tag in (
        "en-GB-oed",
        "i-ami",
        "i-bnn",
        "i-default",
        "i-enochian",
        "i-hak",
        "i-klingon",
        "i-lux",
        "i-mingo",
        "i-navajo",
        "i-pwn",
        "i-tao",
        "i-tay",
        "i-tsu",
        "sgn-BE-FR",
        "sgn-BE-NL",
        "sgn-CH-DE",
        "art-lojban",
        "cel-gaulish",
        "no-bok",
        "no-nyn",
        "zh-guoyu",
        "zh-hakka",
        "zh-min",
        "zh-min-nan",
        "zh-xiang",
    )
)


def is_language_tag(tag: str) -> bool:
    """Whether ``tag`` is a well-formed BCP 47 language tag (syntax only: ``xx-YY`` need not exist)."""
    if len(tag) > LOCALE_MAX_LENGTH:
        return False
    return _LANGUAGE_TAG.fullmatch(tag) is not None or tag.lower() in _GRANDFATHERED


def shipped_match(tag: str) -> str | None:
    """The shipped language that serves a reader of ``tag``, or None.

    RFC 4647 lookup (drop subtags from the end until a shipped tag matches,
    ``en-US`` -> ``en``), then the same language in another region
    (``pt-PT`` or ``pt`` -> ``pt-BR``): a reader of one Portuguese reads the
    other better than English. Case does not matter (``PT-br``).
    """
    if not is_language_tag(tag):
        return None
    shipped = {locale.lower(): locale for locale in SHIPPED_LOCALES}
    subtags = tag.lower().split("-")
    for end in range(len(subtags), 0, -1):
        candidate = "-".join(subtags[:end])
        if candidate in shipped:
            return shipped[candidate]
    language = subtags[0]
    return next((locale for locale in SHIPPED_LOCALES if locale.lower().split("-")[0] == language), None)


def choose_locale(preferences: Iterable[str], default: str) -> str:
    """The first of ``preferences`` (most preferred first) that a shipped language serves, else ``default``.

    Entries that are not language tags (``*``, ``en_US``) are passed over, as a
    header's unknown parts are.
    """
    for tag in preferences:
        match = shipped_match(tag)
        if match is not None:
            return match
    return default


def supported_locale(tag: str | None, default: str) -> str:
    """The shipped language to write in for a stored or requested ``tag``: its match, else ``default``."""
    match = shipped_match(tag) if tag else None
    return match if match is not None else default
