"""What a "this wasn't me" link may do when it is pressed. Pure Python, no I/O.

The account cannot tell its owner from a thief: whoever holds the password and
a session may move the address, and whoever holds an old mailbox may press its
link. These rules make each press finish the incident instead of starting a
tug of war (docs/security.md, 'Hardening the "this wasn't me" undo'):

- A link mailed to the account's current address secures the account in place.
- A link mailed to an address the account left by a confirmed change, within
  the undo window, makes that address the login again. The changes made after
  it are dropped with their links: the thief who moved the address on cannot
  move it back.
- Pressing a link spends it and voids the account's other outstanding links,
  except the links of addresses the account left *before* the pressed link's
  address (still within their window) and the contest links: whoever holds a
  later address must not be able to void an earlier mailbox's undo by pressing
  a link of their own first.
- The notice an undo sends to the address it leaves carries a contest link:
  pressing it freezes the account for support, since two mailboxes claim it.
- A link mailed to an address the account no longer holds and can no longer
  take back does nothing: an old mailbox has no say once its window is over.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from auth_service.domain.accounts import LeftAddress, NotMeLink, User
from auth_service.domain.errors import InvalidCredentials
from common.notices import Notice

# The notice an undo sends to the address it leaves; its link contests the undo.
EMAIL_CHANGE_UNDONE = Notice.EMAIL_CHANGE_UNDONE
# Address-history entries kept per account (the oldest dropped first); far more than a window holds.
ADDRESS_HISTORY_KEPT = 20


class Action(enum.Enum):
    SECURE = "secure"  # in place: the link was mailed to the current address
    RESTORE = "restore"  # the link's address becomes the login again
    CONTEST = "contest"  # the address an undo left claims the account back: frozen for support


class Refusal(enum.Enum):
    GONE = "gone"  # unknown, used, voided or expired
    FROZEN = "frozen"  # the account waits for support
    NO_LONGER_HELD = "no_longer_held"  # mailed to an address the account left, past its window


@dataclass(frozen=True)
class Plan:
    action: Action
    link: NotMeLink
    # The account's links and address history once the press is done (the one update writes both).
    links: tuple[NotMeLink, ...]
    history: tuple[LeftAddress, ...]
    # RESTORE: the login the undo leaves (told, with a contest link).
    left: str | None = None


@dataclass(frozen=True)
class Press:
    """What every press writes, whatever else it does: the links and address history after it, conditional
    on the links' ``version`` it read (a press that finds them changed writes nothing), at ``at``; and the
    second factor back on if the link was a notice of turning it off (the thief's doing)."""

    version: int
    links: tuple[NotMeLink, ...]
    history: tuple[LeftAddress, ...]
    at: datetime
    mfa_on: bool


def plan_press(user: User, links: tuple[NotMeLink, ...], digest: str, now: datetime) -> Plan | Refusal:
    """What pressing the link of ``digest`` does to ``user``, or why it does nothing."""
    link = next((link for link in links if link.digest == digest), None)
    if link is None or not live(link, now):
        return Refusal.GONE
    if user.frozen:
        return Refusal.FROZEN
    if link.notice == EMAIL_CHANGE_UNDONE:
        spent = tuple(_spent(other, other.digest == digest) for other in links)
        return Plan(Action.CONTEST, link, spent, user.address_history)
    if link.email == user.email:
        action, history, left = Action.SECURE, user.address_history, None
    else:
        undoable = user.undoable_from(link.email, now)
        if undoable is None:
            return Refusal.NO_LONGER_HELD
        # The changes made after the one undone go with it: the addresses they reached lose their say.
        history = tuple(entry for entry in user.address_history if entry.left_at < undoable.left_at)
        action, left = Action.RESTORE, user.email
    # Upstream addresses keep their links; the login after the press does not (one undo per incident).
    kept = {entry.email for entry in history if entry.undo_until > now} - {link.email}
    after = tuple(
        _spent(other, other.digest == digest)
        if other.digest == digest or not (other.notice == EMAIL_CHANGE_UNDONE or other.email in kept)
        else other
        for other in links
    )
    return Plan(action, link, after, history, left)


def live(link: NotMeLink, now: datetime) -> bool:
    return not link.used and not link.void and link.expires_at > now


def _spent(link: NotMeLink, pressed: bool) -> NotMeLink:
    if link.used or link.void:
        return link
    return replace(link, used=True) if pressed else replace(link, void=True)


def refuse_while_recovering(user: User) -> None:
    """Until a reset after a "this wasn't me" link (or while frozen), nothing may move the account's address
    or turn its second factor off: whoever holds a session then may be the thief."""
    if user.frozen:
        raise InvalidCredentials("The account is frozen until support has checked who it belongs to.")
    if user.must_reset:
        raise InvalidCredentials("Reset the password first: a 'this wasn't me' link secured the account.")
