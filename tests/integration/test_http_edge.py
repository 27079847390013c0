"""The HTTP edge of the auth service on the real server: ``python -m auth_service`` on waitress.

Proxies, body caps, connection handling and security headers are decided by
waitress or around it, before or after Flask sees a request, so each of these
tests talks to the real process over sockets. docs/security.md, "Hardening
against an attack from outside", names the finding behind each test.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from auth_service.config import Settings
from devtools.probes import SilentServer, half_open_connections, read_response, upload_headers
from devtools.stack import http_json
from tests.observability import metric_samples

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
DEFAULTS = Settings.from_env({"APP_ENV": "development"})
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
MiB = 1024 * 1024


def new_email(prefix: str = "edge") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


@pytest.fixture(scope="module")
def api(start_module_stack):
    """The API with its default settings (limits off) and no worker: a confirm never gets a verdict."""
    return start_module_stack(worker=False)


def request(stack, method: str, path: str, body=None, headers=None, source: str = "127.0.0.1", timeout: float = 10):
    """(status, headers, raw body) over a connection from ``source``, a loopback address of our choice."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.auth_port, timeout=timeout, source_address=(source, 0))
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body)
        sent_headers = {**({"Content-Type": "application/json"} if data else {}), **(headers or {})}
        connection.request(method, path, data, sent_headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# 1. Behind a proxy every client is its own client, and nobody else is believed.


@pytest.fixture(scope="module")
def behind_a_proxy(start_module_stack):
    # The proxy is this test on 127.0.0.1 (TRUSTED_PROXY's default); 127.0.0.2 is a client reaching the API directly.
    return start_module_stack(worker=False, PROXY_HOPS="1", RATELIMIT_ENABLED="true", RATELIMIT_LOGIN_PER_IP="2/hour")


def login_via(stack, forwarded_for: str, source: str = "127.0.0.1") -> int:
    body = {"email": new_email("proxy"), "password": PASSWORD}
    return request(stack, "POST", "/auth/login", body, {"X-Forwarded-For": forwarded_for}, source=source)[0]


def test_behind_a_proxy_each_forwarded_client_has_its_own_per_ip_limit(behind_a_proxy):
    stack = behind_a_proxy
    assert login_via(stack, "203.0.113.1") == 401
    # What the client wrote before the proxy's own entry is not believed: still 203.0.113.1.
    assert login_via(stack, "198.51.100.7, 203.0.113.1") == 401
    assert login_via(stack, "198.51.100.8, 203.0.113.1") == 429
    assert login_via(stack, "203.0.113.2") == 401

    access = [json.loads(line) for line in stack.auth.log_text().splitlines() if '"auth_service.access"' in line]
    assert {"203.0.113.1", "203.0.113.2"} <= {line.get("remote_addr") for line in access}


def test_a_forwarded_for_from_a_peer_that_is_not_the_proxy_is_ignored(behind_a_proxy):
    stack = behind_a_proxy
    assert login_via(stack, "203.0.113.60", source="127.0.0.2") == 401
    assert login_via(stack, "203.0.113.61", source="127.0.0.2") == 401
    # Counted against 127.0.0.2 whatever it claims.
    assert login_via(stack, "203.0.113.62", source="127.0.0.2") == 429


# 2. A padded address meets the same per-address counter as the plain one.


@pytest.fixture(scope="module")
def limited(start_module_stack):
    return start_module_stack(RATELIMIT_ENABLED="true")


def test_a_padded_address_meets_the_failed_login_limit_of_the_plain_one(limited):
    email = new_email("padded")
    assert limited.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    [mail] = limited.sink.wait_for(email, timeout=15)
    assert limited.call("POST", "/auth/confirm", {"email": email, "code": mail.code})[0] == 200

    for _ in range(10):  # RATELIMIT_LOGIN_FAILURES_PER_ADDRESS: 10 a minute by default
        assert limited.call("POST", "/auth/login", {"email": email, "password": "not the password"})[0] == 401
    for padded in (" " * 250 + email, f"\t{email.upper()}  "):
        status, _, body = limited.call("POST", "/auth/login", {"email": padded, "password": PASSWORD})
        assert (status, body["error"]) == (429, "rate_limited")


# 3. Metrics labels come from fixed sets, whatever a client sends.


def test_metrics_labels_stay_bounded_whatever_methods_and_paths_clients_send(api):
    before = http_json("GET", f"{api.base_url}/metrics")[2]
    for n in range(300):
        method = "X" + secrets.token_hex(1000).upper()
        path = "/auth/login" if n % 2 else f"/{secrets.token_hex(100)}"
        assert request(api, method, path)[0] in (400, 404, 405, 501)
    after = http_json("GET", f"{api.base_url}/metrics")[2]

    assert len(after) - len(before) < 20_000
    series = [dict(labels) for (name, labels) in metric_samples(after) if name.startswith("http_request")]
    assert {labels["method"] for labels in series} <= HTTP_METHODS | {"other"}
    routes = {labels["route"] for labels in series}
    assert all(route == "<unmatched>" or (route.startswith("/") and len(route) < 40) for route in routes), routes
    assert all(labels["status"].isdigit() and len(labels["status"]) == 3 for labels in series if "status" in labels)


# 4. Half-open connections do not take the server.


def test_three_hundred_half_open_connections_leave_healthz_answering(api):
    sockets = half_open_connections(api.auth_port, 300)
    try:
        (status, _, _), elapsed = timed(lambda: http_json("GET", f"{api.base_url}/healthz", timeout=10))
        assert status == 200
        assert elapsed < 3.0
    finally:
        for connection in sockets:
            connection.close()


def test_an_idle_half_open_connection_is_closed_after_the_channel_timeout(start_stack):
    stack = start_stack(worker=False, AUTH_CHANNEL_TIMEOUT_SECONDS="2", AUTH_CLEANUP_INTERVAL_SECONDS="1")
    [connection] = half_open_connections(stack.auth_port, 1)
    with connection:
        connection.settimeout(15)
        closed_by_server, elapsed = timed(lambda: connection.recv(1) == b"")
    assert closed_by_server
    assert 1.5 < elapsed < 10


# 5. A body over the cap is refused from its Content-Length, before it is read.

HUGE_UPLOAD = upload_headers("/auth/register", 200 * MiB)


def test_a_200_mib_content_length_gets_the_contract_413_without_the_body_being_sent(api):
    with socket.create_connection(("127.0.0.1", api.auth_port), timeout=5) as connection:
        connection.sendall(HUGE_UPLOAD)
        status, headers, answer = read_response(connection)  # times out if the server waits for the body
    assert (status, headers["Content-Type"]) == (413, "application/json")
    body = json.loads(answer)
    assert body["error"] == "payload_too_large"
    assert str(DEFAULTS.max_body_bytes) in body["message"]


def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_refused_by_the_server(api):
    body = {"email": new_email(), "password": PASSWORD, "name": ""}
    body["name"] = "n" * (DEFAULTS.max_body_bytes - len(json.dumps(body)))
    raw = json.dumps(body).encode()
    assert len(raw) == DEFAULTS.max_body_bytes
    status, _, answer = request(api, "POST", "/auth/register", raw, {"Content-Type": "application/json"})
    assert (status, json.loads(answer)["fields"].keys()) == (422, {"name"})  # read and judged
    status, _, answer = request(api, "POST", "/auth/register", raw + b" ", {"Content-Type": "application/json"})
    assert (status, json.loads(answer)["error"]) == (413, "payload_too_large")


def test_waitress_refusals_carry_the_contract_body(api):
    status, headers, answer = request(api, "GET", "/healthz", headers={"X-Padding": "p" * 300_000})
    assert status == 431
    assert headers["Content-Type"] == "application/json"
    assert json.loads(answer)["error"] == "request_header_fields_too_large"


def test_the_server_stops_reading_a_body_over_the_cap(api):
    chunk = b"a" * (64 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", api.auth_port), timeout=10) as connection:
        connection.sendall(HUGE_UPLOAD)
        # The server answers and closes: sending on fails (kernel buffers take a few MiB first).
        with pytest.raises(ConnectionError):
            while sent < 32 * MiB:
                connection.sendall(chunk)
                sent += len(chunk)
    assert sent < 32 * MiB
    assert http_json("GET", f"{api.base_url}/healthz")[0] == 200


# 11. Confirms waiting for a verdict have a budget of their own.


def test_confirms_waiting_for_a_silent_worker_leave_the_other_endpoints_answering(start_stack):
    api = start_stack()
    # Stopped after its first start: its queues stay bound, so confirms go out and nobody answers them.
    api.worker.stop()
    email = new_email("waiting")
    assert api.call("POST", "/auth/register", {"email": email, "password": PASSWORD})[0] == 201
    budget, excess = DEFAULTS.confirm_max_waiting, 8

    def confirm():
        return timed(lambda: api.call("POST", "/auth/confirm", {"email": email, "code": "000000"}))

    with ThreadPoolExecutor(budget + excess) as pool:
        confirms = [pool.submit(confirm) for _ in range(budget + excess)]
        time.sleep(0.5)  # every confirm is in: as many as the budget allows are waiting for a verdict
        others = {
            "healthz": timed(lambda: api.call("GET", "/healthz")),
            "login": timed(lambda: api.call("POST", "/auth/login", {"email": new_email(), "password": PASSWORD})),
            "register": timed(lambda: api.call("POST", "/auth/register", {"email": new_email(), "password": PASSWORD})),
        }
        answers = [call.result() for call in confirms]

    assert {name: status for name, ((status, _, _), _) in others.items()} == {
        "healthz": 200,
        "login": 401,
        "register": 201,
    }
    elapsed = {name: round(seconds, 2) for name, (_, seconds) in others.items()}
    assert all(seconds < 2.0 for seconds in elapsed.values()), elapsed
    statuses = Counter(status for (status, _, _), _ in answers)
    assert statuses == {202: budget, 503: excess}
    for (status, headers, body), seconds in answers:
        if status == 503:
            assert body["error"] == "service_unavailable" and int(headers["Retry-After"]) >= 1
            # Refused once the waits showed the worker to be behind, not after a wait of its own.
            assert seconds < DEFAULTS.confirm_wait_seconds - 1


# 12. A limit store that hangs costs a request about its timeout, then nothing.


@pytest.fixture
def silent_redis():
    with SilentServer() as server:
        yield server.redis_url


def test_a_limit_store_that_never_answers_costs_each_request_about_its_timeout(start_stack, silent_redis):
    stack = start_stack(worker=False, RATELIMIT_ENABLED="true", RATELIMIT_STORAGE_URI=silent_redis)
    bound = 4 * DEFAULTS.ratelimit_store_timeout_seconds + 0.5
    timings = []
    for _ in range(3):
        calls = [
            ("POST", "/auth/login", {"email": new_email(), "password": PASSWORD}, 401),
            ("POST", "/auth/register", {"email": new_email(), "password": PASSWORD}, 201),
            ("POST", "/auth/resend-code", {"email": new_email()}, 503),  # its cooldown lives in that store
            ("GET", "/healthz", None, 200),
        ]
        for method, path, body, expected in calls:
            (status, _, _), elapsed = timed(lambda: stack.call(method, path, body))  # noqa: B023
            timings.append((path, status, round(elapsed, 2)))
            assert status == expected, timings
    assert all(elapsed < bound for _, _, elapsed in timings), timings


# 15. Security headers on every answer, and a policy /docs can run under.


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.inline_script = ""
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline_script += data.strip()


def policy(headers) -> dict[str, list[str]]:
    directives = [part.split() for part in headers["Content-Security-Policy"].split(";") if part.strip()]
    return {words[0]: words[1:] for words in directives}


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def allows(sources: list[str], url: str, page_url: str) -> bool:
    """Whether a CSP source list (origins and 'self' only) lets the page at ``page_url`` load ``url``."""
    target = origin(urljoin(page_url, url))
    if target == origin(page_url):
        return "'self'" in sources
    return target in sources


def assert_security_headers(headers) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert policy(headers)["frame-ancestors"] == ["'none'"]


def test_every_answer_carries_the_security_headers(api):
    answers = [
        request(api, "GET", "/healthz"),
        request(api, "POST", "/auth/login", {"email": new_email(), "password": PASSWORD}),
        request(api, "GET", "/no-such-page"),
        request(api, "GET", "/openapi.json"),
        request(api, "GET", "/metrics"),
        request(api, "GET", "/docs"),
    ]
    assert [status for status, _, _ in answers] == [200, 401, 404, 200, 200, 200]
    for _, headers, _ in answers:
        assert_security_headers(headers)
        if not headers["Content-Type"].startswith("text/html"):
            assert policy(headers) == {
                "default-src": ["'none'"],
                "base-uri": ["'none'"],
                "form-action": ["'self'"],
                "frame-ancestors": ["'none'"],
            }

    with socket.create_connection(("127.0.0.1", api.auth_port), timeout=5) as connection:
        connection.sendall(HUGE_UPLOAD)  # answered by waitress itself, not by the application
        status, headers, _ = read_response(connection)
    assert status == 413
    assert_security_headers(headers)


def test_the_docs_page_runs_under_its_own_strict_policy(api):
    status, headers, html = request(api, "GET", "/docs")
    assert status == 200
    rules = policy(headers)
    assert rules["default-src"] == ["'none'"]
    for directive in ("script-src", "style-src", "connect-src", "img-src"):
        assert "*" not in rules[directive] and "'unsafe-eval'" not in rules[directive]
    assert "'unsafe-inline'" not in rules["script-src"]

    page = _Tags()
    page.feed(html.decode())
    assert page.inline_script == "", "an inline script would be blocked by the policy"
    page_url = api.base_url + "/docs"
    scripts = [attrs["src"] for tag, attrs in page.tags if tag == "script"]
    styles = [attrs["href"] for tag, attrs in page.tags if tag == "link" and attrs.get("rel") == "stylesheet"]
    assert scripts and styles
    assert all(allows(rules["script-src"], src, page_url) for src in scripts), (scripts, rules)
    assert all(allows(rules["style-src"], href, page_url) for href in styles), (styles, rules)
    [spec_url] = [attrs["data-spec-url"] for _, attrs in page.tags if "data-spec-url" in attrs]
    assert allows(rules["connect-src"], spec_url, page_url)

    for src in scripts:
        if allows(["'self'"], src, page_url):
            status, script_headers, script = request(api, "GET", src)
            assert status == 200 and "javascript" in script_headers["Content-Type"]
            assert_security_headers(script_headers)
            assert b"SwaggerUIBundle" in script
