"""Lifting an address off the suppression list: the service function behind the operator's command
(``python -m email_service suppressions lift``) and, once it exists, the admin API's
``DELETE /admin/suppressions/{email}``.

The worker's list (Redis) is what stops mail, so the lift happens there
first; auth is then told (durably, on ACCOUNT_CONFIRMED_QUEUE) so that
``email_deliverable`` turns true again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from common.messaging.envelope import Outgoing
from common.messaging.messages import SuppressionLifted
from email_service.ports import Suppressions


def lift_suppression(
    suppressions: Suppressions, publish: Callable[[str, Outgoing], None], auth_queue: str, email: str
) -> bool:
    """Take ``email`` off the list and tell auth; True if it was on the list. Auth is told in any case, so a
    lift whose message was lost the first time can simply be run again."""
    lifted = suppressions.lift(email)
    publish(auth_queue, SuppressionLifted(email=email.strip().lower()).outgoing(message_id=f"lift-{uuid.uuid4().hex}"))
    return lifted
