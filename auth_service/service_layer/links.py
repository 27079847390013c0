"""The links mailed to an account's address (confirm, "this wasn't me", restore): their token and their refusals."""

from __future__ import annotations

from common.links import link_token_digest, parse_link_token_reference


class InvalidLink(Exception):
    """The link's token is no token of ours (400 page)."""


class LinkGone(Exception):
    """A well-formed link that is used, voided, expired or unknown (410 page)."""


def link_owner(token: str | None) -> tuple[str, str] | None:
    """(account id, digest of the token) of a link's token, or None for anything that is no token of ours.
    Auth keeps the digest only; the worker minted the token and mailed it."""
    reference = parse_link_token_reference(token)
    if reference is None:
        return None
    user_id, secret = reference
    return user_id, link_token_digest(secret)
