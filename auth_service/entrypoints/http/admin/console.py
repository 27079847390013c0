"""The support console at ``/admin/`` on ADMIN_PORT: server-rendered pages over the admin API's service layer.

No script and no asset from elsewhere: the pages are HTML forms and one
stylesheet of this blueprint, under a policy that allows nothing else
(security_headers.CONSOLE_POLICY). A destructive action is a GET that shows
what will happen, then the POST of that page's form.

Signing in: the admin key pasted into a form. The browser keeps it only
sealed, in a cookie that is ``Secure``, ``HttpOnly``, ``SameSite=Strict`` and
has no ``Max-Age`` (it ends with the browser session; domain/console_sessions.py
bounds it further). Every page checks the key as the API checks a Bearer key
(a revoked key is out at its next click), and every action needs the scope
its API endpoint needs: the pages offer only what the key allows, and a POST
without the scope is refused (403) like the API call. Every POST, the sign-in
form's included, carries the session's CSRF token; a missing or wrong one is
a 403 and nothing happens.

The views call the same ``AccountAdmin`` and ``ActivityLog`` as the JSON
endpoints and bind the key's name as the acting client, so the service
layer's events and the audit trail (``admin.admin_console.<view>``, recorded
by access.py for every request a key made) name the key as the API's do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import marshmallow as ma
from flask import Blueprint, Flask, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from auth_service.config import Settings
from auth_service.domain.accounts import ADMIN_STATUSES, user_search
from auth_service.domain.activity import AuditQuery, Client
from auth_service.domain.admin_keys import AUDIT_READ, SESSIONS_WRITE, USERS_READ, USERS_WRITE, AdminKey
from auth_service.domain.console_sessions import (
    MAX_SEALED_LENGTH,
    ConsoleSession,
    SessionSealer,
    signed_in,
    signed_out,
)
from auth_service.domain.errors import AuthError, Forbidden
from auth_service.domain.paging import BadCursor, decode_cursor, encode_cursor
from auth_service.entrypoints.http import errors, security_headers
from auth_service.entrypoints.http.admin import schemas, users
from auth_service.entrypoints.http.admin.access import admin_services
from auth_service.service_layer.activity import ActivityLog, bind_client, unbind_client
from auth_service.service_layer.admin_access import AdminAccess
from auth_service.service_layer.flows.account_admin import AccountAdmin

BLUEPRINT = security_headers.CONSOLE_BLUEPRINT
# __Host-: the browser takes it only from a secure origin, for this host alone, on every path.
COOKIE = "__Host-admin-console"
CSRF_FIELD = "csrf_token"
PAGE_SIZE = 25
RECENT_ACTIVITY = 10
SEALER = "console_sessions"
STATIC_ENDPOINT = f"{BLUEPRINT}.static"
STATIC_MAX_AGE_SECONDS = 3600

console = Blueprint(
    BLUEPRINT,
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
    static_url_path="/console/static",
)

KEY_REFUSED = "This key was refused: it is not an admin key, or it was revoked."
FORM_EXPIRED = (
    "This form was not sent from this console's open session (its CSRF token is missing or wrong), "
    "so nothing was done. Go back, reload the page and try again."
)
BAD_CURSOR = "Not a cursor of this search: start the search again."
SIGNED_OUT = "Your session ended, or the key was revoked: sign in again."

# What a finished action reports on the next page (a fixed text per action, never text from the request).
NOTICES = {
    "signed_out": "Signed out.",
    "disabled": "The account is disabled and every session of it has ended.",
    "enabled": "The account is enabled.",
    "unlocked": "The account is unlocked.",
    "password_reset": "Every session ended and a password-reset code was mailed to the account's address.",
    "verification_sent": "A new verification code was mailed to the account's address.",
    "sessions_ended": "Every session of the account has ended.",
    "session_ended": "The session has ended.",
    "deleted": "The account was erased.",
}


def install(app: Flask, settings: Settings) -> None:
    """Before access.install: a page's key is known before the limiter counts its request (per key, then)."""
    app.extensions["auth_admin"][SEALER] = SessionSealer(settings.jwt_secret.get_secret_value())
    app.before_request(open_session)
    app.register_blueprint(console)


def form_endpoints(app: Flask) -> set[str]:
    """The console's endpoints that take an HTML form (every POST of its pages)."""
    return {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(f"{BLUEPRINT}.") and "POST" in (rule.methods or ())
    }


def _sealer() -> SessionSealer:
    return admin_services(SEALER)


def _access() -> AdminAccess:
    return admin_services("access")


def _accounts() -> AccountAdmin:
    return admin_services("accounts")


def _activity() -> ActivityLog:
    return admin_services("activity")


def _now() -> datetime:
    return datetime.now(UTC)


# --- the session of each request ---


def open_session() -> None:
    if request.blueprint != BLUEPRINT or request.endpoint == STATIC_ENDPOINT:
        return
    g.console_session = None
    g.console_key = None
    g.console_ended = False
    session = _sealer().open(request.cookies.get(COOKIE), _now())
    if session is not None and session.key is not None:
        try:
            key = _access().authenticate(session.key)
        except AuthError:
            g.console_ended = True
            return
        _act_as(key)
    g.console_session = session


def _act_as(key: AdminKey) -> None:
    """What access.py does for a Bearer key: the request is recorded, and the service layer acts, as this key."""
    g.console_key = key
    g.admin_key = key
    # A sign-in over a live session binds again: the first binding must not outlive the request on this thread.
    earlier = g.pop("activity_client", None)
    if earlier is not None:
        unbind_client(earlier)
    g.activity_client = bind_client(Client(request.remote_addr or "unknown", None, actor=key.name))


def _key() -> AdminKey | None:
    return g.get("console_key")


def _session() -> ConsoleSession | None:
    return g.get("console_session")


def _allows(scope: str) -> bool:
    key = _key()
    return key is not None and key.allows(scope)


@console.after_request
def cache_the_stylesheet(response: Response) -> Response:
    if request.endpoint == STATIC_ENDPOINT:
        response.cache_control.public = True
        response.cache_control.max_age = STATIC_MAX_AGE_SECONDS
    return response


@console.after_request
def forget_an_ended_session(response: Response) -> Response:
    if g.get("console_ended") and COOKIE not in _set_cookies(response):
        _clear_cookie(response)
    return response


def _set_cookies(response: Response) -> set[str]:
    return {value.split("=", 1)[0] for value in response.headers.getlist("Set-Cookie")}


def _set_cookie(response: Response, session: ConsoleSession) -> None:
    value = _sealer().seal(session)
    assert len(value) <= MAX_SEALED_LENGTH  # a key and a token always fit: a longer value would not open
    # No max_age, no expires: the cookie lasts as long as the browser session.
    response.set_cookie(COOKIE, value, secure=True, httponly=True, samesite="Strict", path="/")


def _clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")


def _csrf_refused() -> Response | None:
    session = _session()
    if session is None or not session.csrf_matches(request.form.get(CSRF_FIELD)):
        return _message(403, "Form refused", FORM_EXPIRED)
    return None


# --- pages ---


def _render(template: str, status: int = 200, **context: Any) -> Response:
    session = _session()
    key = _key()
    body = render_template(
        f"console/{template}",
        key=key,
        scopes=sorted(key.scopes) if key is not None else [],
        csrf_token=session.csrf if session is not None else "",
        allows=_allows,
        **context,
    )
    return Response(body, status=status, mimetype="text/html")


def _message(status: int, title: str, message: str, back: str | None = None) -> Response:
    return _render("message.html", status, title=title, message=message, back=back)


def _problem(error: AuthError, back: str | None = None) -> Response:
    fields = error.details.get("fields") or {}
    detail = " ".join(f"{name}: {' '.join(reasons)}" for name, reasons in fields.items())
    return _message(errors.STATUS_OF.get(type(error), 400), "Not done", f"{error.message} {detail}".strip(), back)


def _sign_in_page(status: int = 200, problem: str | None = None) -> Response:
    session = _session()
    if session is not None and session.key is None:
        return _render("sign_in.html", status, problem=problem)
    # A new sign-in form's own session: its CSRF token guards the sign-in POST.
    session = g.console_session = signed_out(_now())
    response = _render("sign_in.html", status, problem=problem)
    _set_cookie(response, session)
    return response


def _page(scope: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """A page for a signed-in key with ``scope``: the sign-in form otherwise, the CSRF check on a POST, and
    the service layer's refusals (no such account, a conflict, ...) as a page with the API's status."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def guarded(**arguments: Any) -> Response:
            key = _key()
            if key is None:
                problem = SIGNED_OUT if g.get("console_ended") else None
                if request.method == "GET":
                    return _sign_in_page(problem=problem)
                return _sign_in_page(401, problem or "Sign in first.")
            if request.method == "POST":
                refused = _csrf_refused()
                if refused is not None:
                    return refused
            home = url_for(f"{BLUEPRINT}.home")
            try:
                _access().authorize(key, scope)
            except Forbidden as refusal:
                return _message(403, "Not allowed", refusal.message, back=home)
            try:
                return view(**arguments)
            except AuthError as error:
                after_post = request.method == "POST" and "user_id" in arguments
                return _problem(error, back=_account_url(arguments["user_id"]) if after_post else home)

        return guarded

    return decorate


def _account(user_id: str) -> dict[str, Any]:
    """The account as the API's ``GET /admin/users/{id}`` shows it."""
    return users.account_detail(_accounts().account(user_id))


def _account_url(user_id: str) -> str:
    return url_for(f"{BLUEPRINT}.view_user", user_id=user_id)


@console.route("/", methods=["GET"])
def home() -> Response:
    """Sign-in, or the search: by address (exact, or a prefix ending in ``*``) and status, a page at a time."""
    if _key() is None:
        return _sign_in_page(problem=SIGNED_OUT if g.get("console_ended") else None)
    notice = NOTICES.get(request.args.get("done", ""))
    if not _allows(USERS_READ):
        return _render("search.html", notice=notice, searched=False, statuses=ADMIN_STATUSES)
    # ``limit`` is in no form, but a link may carry it (the API's bounds apply).
    form = {name: request.args.get(name, "").strip() for name in ("email", "status", "limit", "cursor")}
    try:
        given = {name: value for name, value in form.items() if value}
        args = schemas.UserSearchArgs().load({"limit": PAGE_SIZE} | given)
        after = None
        if args["cursor"] is not None:
            (after,) = decode_cursor(args["cursor"], 1)
    except (ma.ValidationError, BadCursor) as refused:
        problem = _validation_text(refused) if isinstance(refused, ma.ValidationError) else BAD_CURSOR
        return _render("search.html", 422, form=form, problem=problem, searched=False, statuses=ADMIN_STATUSES)
    found, now = _accounts().search(user_search(args["email"], args["status"], args["limit"], after))
    last = found[-1] if len(found) == args["limit"] else None
    next_page = None
    if last is not None:
        query = {name: value for name, value in form.items() if value and name != "cursor"}
        next_page = url_for(f"{BLUEPRINT}.home") + "?" + urlencode({**query, "cursor": encode_cursor(last.email)})
    return _render(
        "search.html",
        form=form,
        notice=notice,
        searched=True,
        accounts=[users.account_summary(user, now) for user in found],
        next_page=next_page,
        first_page=form["cursor"] != "",
        statuses=ADMIN_STATUSES,
    )


def _validation_text(error: ma.ValidationError) -> str:
    messages = error.messages if isinstance(error.messages, dict) else {"form": error.messages}
    return " ".join(f"{name}: {' '.join(map(str, reasons))}" for name, reasons in messages.items())


@console.route("/sign-in", methods=["POST"])
def sign_in() -> Response:
    """Check the pasted key; a good one gets a session (a new CSRF token with it)."""
    refused = _csrf_refused()
    if refused is not None:
        return refused
    try:
        key = _access().authenticate(request.form.get("key", ""))
    except AuthError:
        return _sign_in_page(401, KEY_REFUSED)
    _act_as(key)
    response = redirect(url_for(f"{BLUEPRINT}.home"), 303)
    _set_cookie(response, signed_in(request.form["key"].strip(), _now()))
    return response


@console.route("/sign-out", methods=["POST"])
def sign_out() -> Response:
    """End the session: the cookie is cleared (the key itself stays valid)."""
    if _key() is not None:
        refused = _csrf_refused()
        if refused is not None:
            return refused
    response = redirect(url_for(f"{BLUEPRINT}.home", done="signed_out"), 303)
    _clear_cookie(response)
    return response


@console.route("/console/users/<string:user_id>", methods=["GET"])
@_page(USERS_READ)
def view_user(user_id: str) -> Response:
    """One account: its state, sessions, lock, second factor, deliverability, recent activity, and the actions."""
    detail = _account(user_id)
    recent = None
    if _allows(AUDIT_READ):
        activity = _activity()
        recent = activity.audit(AuditQuery(since=activity.retention_start(), limit=RECENT_ACTIVITY, user_id=user_id))
    return _render(
        "account.html",
        account=detail,
        recent=recent,
        notice=NOTICES.get(request.args.get("done", "")),
        actions=ACTIONS,
    )


# --- the actions ---


@dataclass(frozen=True)
class Action:
    """One of support's actions on an account, as the console offers it.

    ``confirm``: the question of its confirmation page (None: done from the account page at once).
    ``shown``: whether the account page offers it for this account (as the API answers it, the POST
    itself is not refused for that: the service layer decides).
    """

    endpoint: str
    path: str
    scope: str
    label: str
    notice: str
    run: Callable[[AccountAdmin, str, dict[str, Any]], object]
    confirm: str | None = None
    shown: Callable[[dict[str, Any]], bool] = lambda account: True
    form: Callable[[], dict[str, Any]] = dict
    erases: bool = False


def _disable(accounts: AccountAdmin, user_id: str, form: dict[str, Any]) -> None:
    accounts.disable(user_id, form["reason"], form["until"])


def _disable_form() -> dict[str, Any]:
    """The disable's reason and end through the API's own schema; the end is a UTC time without a zone."""
    until = request.form.get("until", "").strip()
    try:
        loaded = schemas.DisableRequest().load(
            {"reason": request.form.get("reason", ""), "until": f"{until}Z" if until else None}
        )
    except ma.ValidationError as refused:
        raise FormRefused(_validation_text(refused)) from None
    return {"reason": loaded["reason"], "until": loaded["until"].astimezone(UTC) if loaded["until"] else None}


class FormRefused(Exception):
    """A field of the confirmation form is not acceptable: the form is shown again with why."""


ACTIONS: list[Action] = [
    Action(
        "disable_user",
        "disable",
        USERS_WRITE,
        "Disable",
        "disabled",
        _disable,
        confirm="Disable this account? Every session of it ends now, and nobody signs in to it until it is "
        "enabled again (or the end you set passes).",
        shown=lambda account: account["disabled"] is None,
        form=_disable_form,
    ),
    Action(
        "enable_user",
        "enable",
        USERS_WRITE,
        "Enable",
        "enabled",
        lambda accounts, user_id, form: accounts.enable(user_id),
        shown=lambda account: account["disabled"] is not None,
    ),
    Action(
        "unlock_user",
        "unlock",
        USERS_WRITE,
        "Unlock",
        "unlocked",
        lambda accounts, user_id, form: accounts.unlock(user_id),
        shown=lambda account: account["lock"]["locked"] or account["lock"]["failed_logins"] > 0,
    ),
    Action(
        "force_password_reset",
        "password-reset",
        USERS_WRITE,
        "Force a password reset",
        "password_reset",
        lambda accounts, user_id, form: accounts.force_password_reset(user_id, g.get("request_id")),
        confirm="Force a password reset? Every session of the account ends now, and a code to choose a new "
        "password is mailed to its address.",
    ),
    Action(
        "resend_verification",
        "resend-verification",
        USERS_WRITE,
        "Resend the verification code",
        "verification_sent",
        lambda accounts, user_id, form: accounts.resend_verification(user_id, g.get("request_id")),
        shown=lambda account: account["status"] == "pending_verification",
    ),
    Action(
        "end_sessions",
        "end-sessions",
        SESSIONS_WRITE,
        "End every session",
        "sessions_ended",
        lambda accounts, user_id, form: accounts.end_sessions(user_id),
        confirm="End every session of this account? Each of its devices is signed out at its next request.",
        shown=lambda account: bool(account["sessions"]),
    ),
    Action(
        "delete_user",
        "delete",
        USERS_WRITE,
        "Delete",
        "deleted",
        lambda accounts, user_id, form: accounts.delete(user_id),
        confirm="Erase this account now? Its data is deleted at once, as at the end of a deletion's grace "
        "period. This cannot be undone.",
        erases=True,
    ),
]


def _action_views(action: Action) -> None:
    rule = f"/console/users/<string:user_id>/{action.path}"

    def confirm_page(user_id: str) -> Response:
        return _render("confirm.html", account=_account(user_id), action=action)

    def act(user_id: str) -> Response:
        try:
            action.run(_accounts(), user_id, action.form())
        except FormRefused as refusal:
            return _render("confirm.html", 422, account=_account(user_id), action=action, problem=str(refusal))
        if action.erases:
            return redirect(url_for(f"{BLUEPRINT}.home", done=action.notice), 303)
        return redirect(url_for(f"{BLUEPRINT}.view_user", user_id=user_id, done=action.notice), 303)

    if action.confirm is not None:
        console.add_url_rule(rule, f"confirm_{action.endpoint}", _page(action.scope)(confirm_page), methods=["GET"])
    console.add_url_rule(rule, action.endpoint, _page(action.scope)(act), methods=["POST"])


for _action in ACTIONS:
    _action_views(_action)


@console.route("/console/users/<string:user_id>/sessions/<string:session_id>/end", methods=["GET"])
@_page(SESSIONS_WRITE)
def confirm_end_session(user_id: str, session_id: str) -> Response:
    """Ask before ending one session."""
    detail = _account(user_id)
    session = next((session for session in detail["sessions"] if session["id"] == session_id), None)
    if session is None:
        return _message(404, "Not found", "No such session: it may have ended already.", back=_account_url(user_id))
    return _render("confirm_session.html", account=detail, session=session)


@console.route("/console/users/<string:user_id>/sessions/<string:session_id>/end", methods=["POST"])
@_page(SESSIONS_WRITE)
def end_session(user_id: str, session_id: str) -> Response:
    """End one session of the account."""
    _accounts().end_session(user_id, session_id)
    return redirect(url_for(f"{BLUEPRINT}.view_user", user_id=user_id, done="session_ended"), 303)


@console.app_template_filter("moment")
def moment(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
