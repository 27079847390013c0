"""The notices' names: what auth asks the worker to mail, and the worker's template of the same name.

Both services speak of them; the names are the templates' file names in email_service/templates.
"""

from __future__ import annotations

import enum


class Notice(enum.StrEnum):
    # Asked by auth (a ``notice.requested`` of this template).
    EMAIL_CHANGE_REQUESTED = "email_change_requested"
    EMAIL_CHANGED = "email_changed"
    EMAIL_CHANGE_UNDONE = "email_change_undone"
    EMAIL_RESTORED = "email_restored"
    ACCOUNT_FROZEN = "account_frozen"
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    ACCOUNT_DELETION_SCHEDULED = "account_deletion_scheduled"
    ACCOUNT_DELETED = "account_deleted"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (a template's name, no secret)
    # Mailed by the worker on an account event.
    WELCOME = "welcome"
    LOGIN_FAILURES = "login_failures"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_UNLOCKED = "account_unlocked"
    NEW_SIGN_IN = "new_sign_in"
