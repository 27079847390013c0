"""Which email addresses an account may have, and the one form each is stored and compared in.

Plain ASCII ``local@domain`` only: a dot-atom local part (no quoted string,
no control character) and a domain name with at least two labels that is not
reserved for special use (``.test``, ``.localhost``, ``.invalid``, ``.local``,
``.onion``, ``.arpa``; RFC 6761), and no IP literal. Every other spelling of a
mailbox (``"v"@x``, ``v@[192.0.2.1]``) would be a second account for one
mailbox, and a quoted local part can smuggle line breaks into mail headers.

email-validator does the parsing. Its deliverability check (a DNS lookup) is
off: this is a pure rule, and the code email proves the mailbox anyway.
"""

from __future__ import annotations

import functools

from email_validator import EmailNotValidError, validate_email

from auth_service.domain.accounts import normalize_email

ASCII_ONLY = "Only addresses in ASCII characters are supported."


class AddressRefused(ValueError):
    """The address is not one an account may have; the message says why, for the caller."""


# A pure function, and an address comes back (each code typed, each sign-in): its accepted forms are
# remembered rather than parsed again. Refused ones are not cached (their exception is raised anew).
@functools.lru_cache(maxsize=4096)
def canonical_address(raw: str) -> str:
    """The stored form of an acceptable address (trimmed, lower-cased), or ``AddressRefused``."""
    address = raw.strip()
    if not address.isascii():
        # The mail path cannot deliver to anything else (no SMTPUTF8), so say so now.
        raise AddressRefused(ASCII_ONLY)
    try:
        parsed = validate_email(
            address,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
            # Passed explicitly: the library's module-wide defaults can be changed by anyone importing it.
            globally_deliverable=True,
            test_environment=False,
        )
    except EmailNotValidError as error:
        raise AddressRefused(str(error)) from None
    if parsed.ascii_email is None:  # with allow_smtputf8=False an accepted address always has one
        raise AddressRefused(ASCII_ONLY)
    return normalize_email(parsed.ascii_email)
