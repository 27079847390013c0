"""The pages of the verification link: plain HTML, no script, at most one form.

Opening the link (GET) only shows the button; pressing it (POST) confirms.
Mail scanners and link previews fetch every link in an email, and a GET that
confirmed would let them spend the code before its owner ever saw it.
"""

from __future__ import annotations

from flask import Response, render_template

from auth_service.domain import errors
from auth_service.domain.recovery import Refusal
from auth_service.service_layer.flows.not_me import Done

TEMPLATE = "verify_page.html"

NOT_VALID = (
    "This link is not valid",
    "Check that you opened the whole link from the email, or ask the app for a new code.",
)
USED_OR_EXPIRED = (
    "This link has expired",
    "It was used already or is too old. If you already confirmed your address, you can sign in; "
    "otherwise ask the app for a new code.",
)
TRY_AGAIN = ("Please try again", "The service is busy right now. Go back and press the button again in a moment.")

# What each error of a link submission shows; anything else is a link that is not valid (400).
# A burned code is "expired" to the link's user: no guess of theirs can bring it back.
_PAGE_FOR_ERROR: dict[type[errors.AuthError], tuple[int, tuple[str, str]]] = {
    errors.CodeExpired: (410, USED_OR_EXPIRED),
    errors.TooManyAttempts: (410, USED_OR_EXPIRED),
    errors.ServiceUnavailable: (503, TRY_AGAIN),
}


def page(
    status: int,
    title: str,
    message: str,
    token: str | None = None,
    action: str = "",
    button: str = "Confirm my email address",
) -> Response:
    body = render_template(TEMPLATE, title=title, message=message, token=token, action=action, button=button)
    # The security headers come from security_headers.install, as on every answer: the pages load
    # nothing and run nothing, and the API policy's form-action 'self' lets their one form post back.
    return Response(body, status=status, mimetype="text/html")


def confirm_button(token: str, action: str) -> Response:
    return page(
        200,
        "Confirm your email address",
        "Press the button to confirm this address for your account.",
        token=token,
        action=action,
    )


def confirmed() -> Response:
    return page(200, "Address confirmed", "Your email address is confirmed. You can now sign in in the app.")


def in_progress() -> Response:
    return page(
        202, "Almost done", "Your address is being confirmed. Sign in to the app in a moment; no need to press again."
    )


def not_me_button(token: str, action: str) -> Response:
    return page(
        200,
        "This wasn't me",
        "Press the button to sign every device out of your account, stop its password from working and get "
        "a code by email to choose a new one. If the notice was about an address change, the address it was "
        "sent to becomes the account's address again.",
        token=token,
        action=action,
        button="Secure my account",
    )


def contest_button(token: str, action: str) -> Response:
    return page(
        200,
        "I made that change",
        "Press the button if you changed the account's address yourself and the old address took it back "
        "without you. The account will be frozen, for both addresses, until support has checked who it "
        "belongs to.",
        token=token,
        action=action,
        button="Freeze the account",
    )


_DONE = {
    Done.SECURED: (
        "Your account is secured",
        "Every device was signed out and the password no longer works. A code to choose a new password is on "
        'its way to the account\'s address: use it with "Forgot password" in the app.',
    ),
    Done.RESTORED: (
        "Your address is back",
        "The change of address was undone: this address is the account's again. Every device was signed out "
        "and the password no longer works. A code to choose a new password is on its way to this address: "
        'use it with "Forgot password" in the app.',
    ),
    Done.CONTESTED: (
        "The account is frozen",
        "Nobody can sign in to the account, or change it, until support has checked who it belongs to. "
        "Contact support from this address.",
    ),
    Done.NOT_RESTORED: (
        "The change could not be undone",
        "Another account uses that address now, so it could not be given back. Every device was signed out and "
        "the account is frozen until support has checked who it belongs to: contact support from this "
        "address. No code was sent.",
    ),
}


def not_me_done(done: Done) -> Response:
    return page(200, *_DONE[done])


def not_me_gone() -> Response:
    return page(
        410,
        "This link has expired",
        "It was used already, another link of the account was used first, or it is too old. Nothing was "
        'changed by this one. To secure your account, reset your password with "Forgot password" in the app.',
    )


_REFUSED = {
    Refusal.NO_LONGER_HELD: (
        "The change could not be undone",
        "This address is no longer the account's, and the time to undo the change is over. Nothing was "
        "changed. Contact support if the account is yours.",
    ),
    Refusal.FROZEN: (
        "The account is frozen",
        "Support is checking who the account belongs to; nothing was changed. Contact support from this address.",
    ),
}


def not_me_refused(refusal: Refusal) -> Response:
    return page(410, *_REFUSED.get(refusal, _REFUSED[Refusal.NO_LONGER_HELD]))


def not_valid() -> Response:
    return page(400, *NOT_VALID)


def for_error(error: errors.AuthError) -> Response:
    status, (title, message) = _PAGE_FOR_ERROR.get(type(error), (400, NOT_VALID))
    response = page(status, title, message)
    retry_after = error.details.get("retry_after")
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def restore_button(token: str, action: str) -> Response:
    return page(
        200,
        "Keep your account",
        "Your account is waiting to be deleted. Press the button to keep it: nothing will be erased, and you "
        "sign in again in the app.",
        token=token,
        action=action,
        button="Keep my account",
    )


def restored() -> Response:
    return page(
        200,
        "Your account is kept",
        "The deletion is cancelled and you can sign in again in the app. If you did not ask for the deletion "
        'yourself, change your password now ("Forgot password" in the app).',
    )


def restore_gone() -> Response:
    return page(
        410,
        "This link has expired",
        "It was used already, belongs to an earlier deletion, or the account has been erased.",
    )
