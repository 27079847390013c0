"""The support console at /admin/ on the real auth process: with a plain HTTP client, then in headless Chromium.

The HTTP client keeps the console's cookie itself (a standard cookie jar
never sends a ``Secure`` cookie over plain HTTP); Chromium accepts it from
this machine's loopback address, which browsers count as a secure origin.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import pytest

from auth_service.domain.admin_keys import USERS_READ
from auth_service.entrypoints.http.admin.console import COOKIE
from auth_service.entrypoints.http.security_headers import CONSOLE_POLICY
from tests.integration.test_admin_api import ALL_SCOPES, create_key, login, me, signed_in
from tests.integration.test_contract_flow import emailed_codes, new_email, register
from tests.integration.test_docs_page import browser  # noqa: F401 (the Chromium fixture, shared)
from tests.unit.test_console_sessions import secret_of
from tests.waiting import eventually

PAGE_TIMEOUT_SECONDS = 20
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


@dataclass
class Page:
    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def csrf(self) -> str:
        found = CSRF.search(self.text)
        assert found is not None, self.text
        return found.group(1)

    def set_cookie(self) -> str | None:
        cookies = self.headers.get_all("Set-Cookie") or []
        return next((value for value in cookies if value.startswith(COOKIE + "=")), None)


@dataclass
class Console:
    """A browser reduced to what the console needs: its one cookie, no redirect followed."""

    base_url: str
    cookie: str | None = None
    pages: list[Page] = field(default_factory=list)

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Page:
        parts = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(parts.netloc, timeout=30)
        headers = {}
        body = None
        if self.cookie is not None:
            headers["Cookie"] = f"{COOKIE}={self.cookie}"
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            page = Page(response.status, response.headers, response.read().decode())
        finally:
            connection.close()
        set_cookie = page.set_cookie()
        if set_cookie is not None:
            value = set_cookie.split(";", 1)[0].split("=", 1)[1]
            cleared = not value or "max-age=0" in set_cookie.lower()
            self.cookie = None if cleared else value
        return page

    def get(self, path: str) -> Page:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Page:
        return self.request("POST", path, form)

    def sign_in(self, key: str) -> Page:
        form = self.get("/admin/")
        assert form.status == 200 and 'id="sign-in-form"' in form.text
        return self.post("/admin/sign-in", {"csrf_token": form.csrf, "key": key})


@pytest.fixture(scope="module")
def admin_stack(start_module_stack, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("console") / "admin-keys"
    # The default resend cooldown (60 s): support's resend follows the registration's code at once.
    return start_module_stack(ADMIN_KEYS_FILE=str(keys_file))


@pytest.fixture(scope="module")
def support_key(admin_stack) -> str:
    return create_key(admin_stack, "support-desk", ALL_SCOPES)


def user_id_of(stack, key: str, email: str) -> str:
    status, _, page = stack.admin_call("GET", f"/admin/users?email={email}", key)
    assert status == 200, page
    (user,) = page["users"]
    return user["id"]


def account(stack, key: str, user_id: str) -> dict:
    status, _, body = stack.admin_call("GET", f"/admin/users/{user_id}", key)
    assert status == 200, body
    return body


def test_without_a_cookie_every_page_is_the_sign_in_form(admin_stack):
    console = Console(admin_stack.admin_url)
    for path in ("/admin/", "/admin/?email=a*", "/admin/console/users/0123456789abcdef0123456789abcdef"):
        console.cookie = None
        page = console.get(path)
        assert page.status == 200, (path, page.status)
        assert 'id="sign-in-form"' in page.text and 'id="search-form"' not in page.text
        assert page.headers["Content-Security-Policy"] == CONSOLE_POLICY
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["X-Frame-Options"] == "DENY"
    # A page the console links is refused to anyone not signed in, with the sign-in form.
    console.cookie = None
    page = console.post("/admin/console/users/0123456789abcdef0123456789abcdef/enable", {"csrf_token": "x"})
    assert page.status == 401 and 'id="sign-in-form"' in page.text
    # The stylesheet and the icon are the pages' only assets, from this origin.
    stylesheet = console.get("/admin/console/static/console.css")
    assert stylesheet.status == 200 and "max-age=" in stylesheet.headers["Cache-Control"]
    # Nothing of the console answers on the public port.
    public = Console(admin_stack.base_url)
    for path in ("/admin/", "/admin/console/static/console.css"):
        assert public.get(path).status == 404, path
    assert public.post("/admin/sign-in", {"key": "x"}).status in (404, 405)


def test_signing_in_keeps_the_key_sealed_in_a_session_cookie_and_signing_out_clears_it(admin_stack, support_key):
    console = Console(admin_stack.admin_url)
    signed = console.sign_in(support_key)
    assert signed.status == 303 and signed.headers["Location"].endswith("/admin/")
    set_cookie = signed.set_cookie()
    assert set_cookie is not None
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attributes
    assert "samesite=strict" in set_cookie.lower()
    # For the tab's life: no Max-Age, no Expires.
    assert not {"max-age", "expires"} & attributes
    assert support_key not in set_cookie and secret_of(support_key) not in set_cookie

    home = console.get("/admin/")
    assert home.status == 200 and 'id="search-form"' in home.text and "support-desk" in home.text

    out = console.post("/admin/sign-out", {"csrf_token": home.csrf})
    assert out.status == 303 and console.cookie is None
    cleared = out.set_cookie()
    assert cleared is not None and ("max-age=0" in cleared.lower() or "expires=thu, 01 jan 1970" in cleared.lower())
    assert 'id="sign-in-form"' in console.get("/admin/").text


def test_a_wrong_or_revoked_key_is_refused(admin_stack):
    from tests.integration.test_admin_api import admin_keys

    console = Console(admin_stack.admin_url)
    good = create_key(admin_stack, "soon-revoked", USERS_READ)
    for wrong in ("", "not a key", good[:-1] + ("A" if good[-1] != "A" else "B")):
        page = console.sign_in(wrong)
        assert page.status == 401, wrong
        assert "This key was refused" in page.text and 'id="search-form"' not in page.text
        assert 'id="search-form"' not in console.get("/admin/").text

    assert console.sign_in(good).status == 303
    assert 'id="search-form"' in console.get("/admin/").text
    assert admin_keys(admin_stack, "revoke", "soon-revoked").returncode == 0
    # The sealed cookie still opens, but its key no longer does: the session is over at the next request.
    page = console.get("/admin/")
    assert 'id="sign-in-form"' in page.text and "sign in again" in page.text
    assert console.cookie is None or 'id="search-form"' not in console.get("/admin/").text


def test_a_post_without_the_sessions_csrf_token_is_refused_and_does_nothing(admin_stack, support_key):
    email = new_email()
    assert register(admin_stack, email)[0] == 201
    user_id = user_id_of(admin_stack, support_key, email)

    # The sign-in form's token too.
    console = Console(admin_stack.admin_url)
    console.get("/admin/")
    for token in (None, "", "forged-token"):
        form = {"key": support_key} | ({"csrf_token": token} if token is not None else {})
        page = console.post("/admin/sign-in", form)
        assert page.status == 403 and "nothing was done" in page.text, token

    assert console.sign_in(support_key).status == 303
    page = console.get(f"/admin/console/users/{user_id}/disable")
    assert page.status == 200
    other = Console(admin_stack.admin_url)
    other.sign_in(support_key)
    someone_elses = other.get("/admin/").csrf
    assert someone_elses != page.csrf
    for token in (None, "", "forged-token", someone_elses):
        form = {"reason": "csrf test"} | ({"csrf_token": token} if token is not None else {})
        refused = console.post(f"/admin/console/users/{user_id}/disable", form)
        assert refused.status == 403 and "nothing was done" in refused.text, token
        assert account(admin_stack, support_key, user_id)["disabled"] is None
    refused = console.post("/admin/sign-out", {})
    assert refused.status == 403 and 'id="search-form"' in console.get("/admin/").text


def test_a_key_without_users_write_is_offered_no_action_and_refused_on_post(admin_stack, support_key):
    email = new_email()
    assert register(admin_stack, email)[0] == 201
    user_id = user_id_of(admin_stack, support_key, email)
    reader = create_key(admin_stack, "read-only-desk", USERS_READ)

    console = Console(admin_stack.admin_url)
    assert console.sign_in(reader).status == 303
    results = console.get(f"/admin/?email={email}")
    assert results.status == 200 and f"/admin/console/users/{user_id}" in results.text
    page = console.get(f"/admin/console/users/{user_id}")
    assert page.status == 200 and email in page.text
    assert 'id="no-actions"' in page.text
    assert "action-" not in page.text and "/end" not in page.text

    for action in ("disable", "enable", "unlock", "password-reset", "resend-verification", "delete"):
        refused = console.post(f"/admin/console/users/{user_id}/{action}", {"csrf_token": page.csrf, "reason": "x"})
        assert refused.status == 403 and "users:write" in refused.text, action
    for path in (f"/admin/console/users/{user_id}/end-sessions", f"/admin/console/users/{user_id}/sessions/s1/end"):
        refused = console.post(path, {"csrf_token": page.csrf})
        assert refused.status == 403 and "sessions:write" in refused.text, path
        assert console.get(path).status == 403
    # Nothing changed: the account is as it was, and still there.
    after = account(admin_stack, support_key, user_id)
    assert after["disabled"] is None and after["status"] == "pending_verification"


def test_a_console_action_is_in_the_audit_trail_with_the_keys_name(admin_stack, support_key):
    email = new_email()
    assert register(admin_stack, email)[0] == 201
    user_id = user_id_of(admin_stack, support_key, email)
    console = Console(admin_stack.admin_url)
    console.sign_in(support_key)
    confirm = console.get(f"/admin/console/users/{user_id}/disable")
    done = console.post(
        f"/admin/console/users/{user_id}/disable", {"csrf_token": confirm.csrf, "reason": "chargeback", "until": ""}
    )
    assert done.status == 303, done.text
    disabled = account(admin_stack, support_key, user_id)["disabled"]
    assert disabled is not None and disabled["reason"] == "chargeback" and disabled["by"] == "support-desk"

    def trail() -> dict[str, tuple[str | None, int | None]]:
        status, _, page = admin_stack.admin_call("GET", f"/admin/audit?user_id={user_id}&limit=50", support_key)
        assert status == 200, page
        return {entry["type"]: (entry["actor"], entry["status"]) for entry in page["entries"]}

    # The event joins the account's activity once the broker has it.
    def with_the_event() -> dict[str, tuple[str | None, int | None]] | None:
        found = trail()
        return found if "user.disabled" in found else None

    recorded = eventually(with_the_event, "user.disabled in the account's activity")
    assert recorded["admin.admin_console.disable_user"] == ("support-desk", 303)
    assert recorded["user.disabled"] == ("support-desk", None)

    # An end in the past is refused as the API refuses it, and the form says why.
    page = console.get(f"/admin/console/users/{user_id}/enable")
    assert page.status == 405
    enabled = console.post(f"/admin/console/users/{user_id}/enable", {"csrf_token": confirm.csrf})
    assert enabled.status == 303
    confirm = console.get(f"/admin/console/users/{user_id}/disable")
    refused = console.post(
        f"/admin/console/users/{user_id}/disable",
        {"csrf_token": confirm.csrf, "reason": "late", "until": "2001-01-01T00:00:00"},
    )
    assert refused.status == 409, refused.text
    refused = console.post(f"/admin/console/users/{user_id}/disable", {"csrf_token": confirm.csrf, "reason": ""})
    assert refused.status == 422 and "reason" in refused.text
    assert account(admin_stack, support_key, user_id)["disabled"] is None

    # The form's end is a UTC time without a zone, to the minute as a browser's date-time field sends it.
    until = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    form = {"csrf_token": confirm.csrf, "reason": "a day off", "until": until.strftime("%Y-%m-%dT%H:%M")}
    assert console.post(f"/admin/console/users/{user_id}/disable", form).status == 303
    disabled = account(admin_stack, support_key, user_id)["disabled"]
    assert datetime.fromisoformat(disabled["until"]) == until
    assert "until " + until.strftime("%Y-%m-%d %H:%M:%S UTC") in console.get(f"/admin/console/users/{user_id}").text


ROW_LINK = re.compile(r'<a href="/admin/console/users/([0-9a-f]+)">([^<]+)</a>')
NEXT_PAGE = re.compile(r'<a href="([^"]+)" id="next-page">')


def test_the_search_finds_by_prefix_and_status_page_by_page(admin_stack, support_key):
    stack = admin_stack
    prefix = f"pages-{new_email().split('@')[0]}"
    emails = sorted(f"{prefix}-{index}@example.com" for index in range(5))
    for email in emails:
        assert register(stack, email)[0] == 201
    console = Console(stack.admin_url)
    console.sign_in(support_key)

    seen: list[str] = []
    path: str | None = f"/admin/?{urlencode({'email': prefix + '*', 'limit': '2'})}"
    pages = 0
    while path is not None:
        page = console.get(path.replace("&amp;", "&"))
        assert page.status == 200, page.text
        rows = [email for _, email in ROW_LINK.findall(page.text)]
        assert 1 <= len(rows) <= 2
        seen += rows
        pages += 1
        following = NEXT_PAGE.search(page.text)
        path = following.group(1) if following else None
        if path is not None:
            assert "limit=2" in path and "cursor=" in path
        assert pages <= 4
    assert seen == emails and pages == 3

    exact = console.get(f"/admin/?{urlencode({'email': emails[2].upper()})}")
    assert [email for _, email in ROW_LINK.findall(exact.text)] == [emails[2]]
    [(user_id, _)] = ROW_LINK.findall(exact.text)
    assert stack.admin_call("POST", f"/admin/users/{user_id}/disable", support_key, {"reason": "x"})[0] == 200
    disabled = console.get(f"/admin/?{urlencode({'email': prefix + '*', 'status': 'disabled'})}")
    assert [email for _, email in ROW_LINK.findall(disabled.text)] == [emails[2]]
    assert 'id="next-page"' not in disabled.text
    pending = console.get(f"/admin/?{urlencode({'email': prefix + '*', 'status': 'pending_verification'})}")
    assert [email for _, email in ROW_LINK.findall(pending.text)] == emails[:2] + emails[3:]
    nothing = console.get(f"/admin/?{urlencode({'email': 'nobody-' + prefix + '*'})}")
    assert nothing.status == 200 and 'id="no-results"' in nothing.text

    for query in ({"status": "frozen"}, {"cursor": "nonsense"}, {"limit": "0"}, {"email": "x" * 300}):
        refused = console.get(f"/admin/?{urlencode(query)}")
        assert refused.status == 422 and 'id="problem"' in refused.text, query


def test_the_other_actions_do_through_the_console_what_their_endpoints_do(admin_stack, support_key):
    stack = admin_stack
    user_id, email, first = signed_in(stack)
    second = login(stack, email)[2]
    console = Console(stack.admin_url)
    console.sign_in(support_key)
    base = f"/admin/console/users/{user_id}"

    page = console.get(base)
    sessions = account(stack, support_key, user_id)["sessions"]
    assert len(sessions) == 2 and all(f"{base}/sessions/{session['id']}/end" in page.text for session in sessions)
    one = sessions[0]["id"]
    confirm = console.get(f"{base}/sessions/{one}/end")
    assert confirm.status == 200 and "End this session?" in confirm.text
    assert console.post(f"{base}/sessions/{one}/end", {"csrf_token": confirm.csrf}).status == 303
    assert [session["id"] for session in account(stack, support_key, user_id)["sessions"]] == [sessions[1]["id"]]
    assert console.post(f"{base}/sessions/{one}/end", {"csrf_token": confirm.csrf}).status == 404

    confirm = console.get(f"{base}/end-sessions")
    assert confirm.status == 200 and "End every session" in confirm.text
    assert console.post(f"{base}/end-sessions", {"csrf_token": confirm.csrf}).status == 303
    assert account(stack, support_key, user_id)["sessions"] == []
    assert me(stack, first["access_token"])[0] == 401 and me(stack, second["access_token"])[0] == 401

    third = login(stack, email)[2]
    confirm = console.get(f"{base}/password-reset")
    assert confirm.status == 200
    assert console.post(f"{base}/password-reset", {"csrf_token": confirm.csrf}).status == 303
    assert me(stack, third["access_token"])[0] == 401
    assert len(stack.sink.wait_for(email, count=2, timeout=15)) >= 2  # the confirmation code, then the reset code

    assert console.post(f"{base}/unlock", {"csrf_token": confirm.csrf}).status == 303
    refused = console.post(f"{base}/resend-verification", {"csrf_token": confirm.csrf})
    assert refused.status == 409 and "confirmed already" in refused.text
    pending = new_email()
    pending_id = register(stack, pending)[2]["id"]
    emailed_codes(stack, pending)
    page = console.get(f"/admin/console/users/{pending_id}")
    assert 'id="action-resend-verification"' in page.text
    assert (
        console.post(f"/admin/console/users/{pending_id}/resend-verification", {"csrf_token": page.csrf}).status == 303
    )
    assert len(emailed_codes(stack, pending, count=2)) == 2

    confirm = console.get(f"{base}/delete")
    assert confirm.status == 200 and "cannot be undone" in confirm.text
    gone = console.post(f"{base}/delete", {"csrf_token": confirm.csrf})
    assert gone.status == 303 and gone.headers["Location"].endswith("/admin/?done=deleted")
    assert stack.admin_call("GET", f"/admin/users/{user_id}", support_key)[0] == 404
    assert console.get(base).status == 404
    assert register(stack, email)[0] == 201  # the address is free again, as after a deletion's grace


def test_a_console_page_counts_against_its_keys_limit_not_the_addresss(start_stack, tmp_path):
    keys_file = tmp_path / "admin-keys"
    stack = start_stack(
        worker=False,
        ADMIN_KEYS_FILE=str(keys_file),
        RATELIMIT_ENABLED="true",
        RATELIMIT_ADMIN_PER_IP="4/minute",
        RATELIMIT_ADMIN_PER_KEY="100/minute",
    )
    key = create_key(stack, "busy-desk", USERS_READ)
    console = Console(stack.admin_url)
    assert console.sign_in(key).status == 303  # the form and the sign-in: two of the address's four
    for _ in range(10):
        assert console.get("/admin/?email=nobody*").status == 200
    # Without a key, the address's own limit holds.
    stranger = Console(stack.admin_url)
    statuses = [stranger.get("/admin/").status for _ in range(4)]
    assert statuses[:2] == [200, 200] and statuses[-1] == 429, statuses


def test_in_chromium_support_signs_in_finds_an_account_disables_it_and_enables_it(
    admin_stack,
    support_key,
    browser,  # noqa: F811 (the fixture imported above)
    tmp_path,
    note,
):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    stack = admin_stack
    prefix = f"console-{new_email().split('@')[0]}"
    emails = [f"{prefix}-{index}@example.com" for index in range(3)]
    for email in emails:
        assert register(stack, email)[0] == 201
    target = emails[1]
    shots: list[str] = []

    def shot(name: str) -> None:
        path = tmp_path / f"console-{len(shots) + 1:02d}-{name}.png"
        browser.save_screenshot(str(path))
        shots.append(str(path))

    def text(css: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, css).text

    def follow(by: str, value: str) -> None:
        """Click what leads to another page, and wait until that page has replaced this one.

        The old page is recognised by a mark on its window object, not by an element reference:
        a reference to a node of a document being torn down can fail with errors other than
        "stale" while the navigation is under way.
        """
        browser.execute_script("window.consoleTestOldPage = true")
        browser.find_element(by, value).click()

        def new_page_loaded(driver) -> bool:
            try:
                return driver.execute_script(
                    "return window.consoleTestOldPage !== true && document.readyState === 'complete'"
                )
            except WebDriverException:  # the old document's context went away mid-call
                return False

        WebDriverWait(browser, PAGE_TIMEOUT_SECONDS).until(new_page_loaded)

    browser.get(stack.admin_url + "/admin/")
    shot("sign-in")
    browser.find_element(By.ID, "key").send_keys(support_key)
    follow(By.ID, "sign-in")
    assert "support-desk" in text("#signed-in-as")
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None and cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "expiry" not in cookie  # a session cookie: gone with the browser session
    assert support_key not in cookie["value"]

    browser.find_element(By.ID, "email").send_keys(f"{prefix}*")
    follow(By.ID, "search")
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert [row.find_element(By.TAG_NAME, "a").text for row in rows] == emails
    shot("search")

    follow(By.LINK_TEXT, target)
    assert text("#account-email") == target
    assert text("#account-status") == "pending_verification"
    follow(By.ID, "action-disable")
    assert "Every session of it ends now" in text("#question")
    browser.find_element(By.ID, "reason").send_keys("Chargeback under review")
    shot("disable-confirm")
    follow(By.ID, "confirm")

    assert text("#account-status") == "disabled"
    assert "The account is disabled" in text("#notice")
    assert "Chargeback under review" in text("#disabled-reason") and "support-desk" in text("#disabled")
    assert "admin.admin_console.disable_user" in text("#activity")
    shot("disabled")
    detail = account(stack, support_key, user_id_of(stack, support_key, target))
    assert detail["status"] == "disabled" and detail["disabled"]["by"] == "support-desk"

    follow(By.ID, "action-enable")
    assert text("#account-status") == "pending_verification"
    assert "The account is enabled" in text("#notice")
    assert browser.find_elements(By.ID, "disabled") == []
    shot("enabled")
    assert account(stack, support_key, detail["id"])["disabled"] is None

    follow(By.ID, "sign-out")
    assert browser.find_element(By.ID, "sign-in-form") is not None
    assert browser.get_cookie(COOKIE) is None or browser.get_cookie(COOKIE)["value"] != cookie["value"]

    # Every page ran under its policy: nothing refused, nothing failed to load.
    problems = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert problems == []
    for path in shots:
        note(f"console screenshot: {path}")
