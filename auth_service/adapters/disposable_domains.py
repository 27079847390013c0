"""The disposable-mail domains refused at registration: the ``disposable-email-domains`` package's list
(a maintained copy of the community list; ``make requirements`` takes its newest release), plus the
operator's own domains to block and to allow, from settings and files (one domain a line, ``#`` comments)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from auth_service.domain.abuse import DisposableDomains, read_domain_list


def maintained_list() -> frozenset[str]:
    # Imported here, not at the top: some 10,000 names that only a service blocking them needs to hold.
    from disposable_email_domains import blocklist

    return frozenset(blocklist)


def load(
    blocked: Iterable[str] = (),
    allowed: Iterable[str] = (),
    blocked_file: Path | str | None = None,
    allowed_file: Path | str | None = None,
    maintained: frozenset[str] | None = None,
) -> DisposableDomains:
    return DisposableDomains(
        blocked=(maintained_list() if maintained is None else maintained)
        | read_domain_list(blocked)
        | _file(blocked_file),
        allowed=read_domain_list(allowed) | _file(allowed_file),
    )


def _file(path: Path | str | None) -> frozenset[str]:
    if not path:
        return frozenset()
    return read_domain_list(Path(path).read_text(encoding="utf-8").splitlines())
