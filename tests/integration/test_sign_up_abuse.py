"""Sign-up abuse on the real processes (waitress, the worker, RabbitMQ, Redis, a mail sink), against local
fakes of the outside APIs on loopback (devtools/abuse_fakes.py): a Pwned Passwords range API, and the
siteverify endpoints of Turnstile and hCaptcha.

The checks themselves, on fakes, are in tests/unit/test_sign_up_abuse.py.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from devtools.abuse_fakes import CaptchaFake, PwnedPasswordsFake, sha1_hex
from devtools.stack import http_json
from tests.integration.test_tracing import Collector
from tests.observability import metric_samples

BREACHED = "correct horse battery"
DISPOSABLE = "mailinator.com"  # in the disposable-email-domains package's list
ALLOWED_DISPOSABLE = "yopmail.com"  # in it too, and let through by ALLOWED_EMAIL_DOMAINS
BCRYPT_ROUNDS = "12"  # a production cost: one hash is a cost a refused request is seen not to pay


def clean_password() -> str:
    """A password nobody leaked, new each time: a fresh prefix, so no answer comes from the cache."""
    return f"clean passphrase {uuid.uuid4().hex}"


def address(domain: str = "example.com") -> str:
    return f"abuse-{uuid.uuid4().hex[:12]}@{domain}"


class System:
    def __init__(self, stack, ranges: PwnedPasswordsFake, captcha: CaptchaFake, collector: Collector):
        self.stack = stack
        self.ranges = ranges
        self.captcha = captcha
        self.collector = collector

    def post(self, path: str, body: dict, headers: dict | None = None):
        return self.stack.call("POST", path, body, headers)

    def with_captcha(self, body: dict) -> dict:
        return {**body, "captcha_token": self.captcha.new_token()}

    def metrics(self) -> dict:
        status, _, text = http_json("GET", f"{self.stack.base_url}/metrics")
        assert status == 200
        return metric_samples(text)

    def refusals(self, reason: str) -> float:
        return self.metrics().get(("abuse_refusals_total", (("reason", reason),)), 0.0)

    def skipped(self, reason: str) -> float:
        return self.metrics().get(
            ("abuse_checks_skipped_total", (("check", "pwned_passwords"), ("reason", reason))), 0.0
        )

    def cpu_seconds(self) -> float:
        return self.metrics()[("process_cpu_seconds_total", ())]

    def registered_and_confirmed(self, password: str) -> tuple[str, dict]:
        email = address()
        status, _, _ = self.post("/auth/register", self.with_captcha({"email": email, "password": password}))
        assert status == 201
        [mail] = self.stack.sink.wait_for(email)
        assert self.post("/auth/confirm", {"email": email, "code": mail.code})[0] == 200
        status, _, tokens = self.post("/auth/login", {"email": email, "password": password})
        assert status == 200
        return email, {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture(scope="module")
def system(start_module_stack, tmp_path_factory):
    blocked_file = tmp_path_factory.mktemp("domains") / "blocked.txt"
    blocked_file.write_text("# the operator's own\nours-blocked.example\n")
    with (
        PwnedPasswordsFake({BREACHED: 3_645_804}) as ranges,
        CaptchaFake() as captcha,
        Collector() as collector,
    ):
        stack = start_module_stack(
            PWNED_PASSWORDS_URL=ranges.url,
            CAPTCHA_PROVIDER="turnstile",
            CAPTCHA_SECRET=captcha.secret,
            CAPTCHA_VERIFY_URL=f"{captcha.url}/turnstile/v0/siteverify",
            BLOCK_DISPOSABLE_ADDRESSES="true",
            ALLOWED_EMAIL_DOMAINS=ALLOWED_DISPOSABLE,
            BLOCKED_EMAIL_DOMAINS_FILE=str(blocked_file),
            BCRYPT_ROUNDS=BCRYPT_ROUNDS,
            # Every log line and every span, to search them for the password.
            LOG_LEVEL="DEBUG",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        yield System(stack, ranges, captcha, collector)


# --- breached passwords -----------------------------------------------------------------------


def test_a_breached_password_is_refused_at_register_reset_and_change_and_only_five_hex_digits_leave(system):
    before = system.refusals("breached_password")
    email = address()
    status, _, body = system.post("/auth/register", system.with_captcha({"email": email, "password": BREACHED}))
    assert status == 422
    assert body["error"] == "validation_error"
    assert "appeared in a data breach" in body["fields"]["password"][0]

    password = clean_password()
    email, bearer = system.registered_and_confirmed(password)
    status, _, body = system.post(
        "/auth/password/change", {"current_password": password, "new_password": BREACHED}, bearer
    )
    assert (status, list(body["fields"])) == (422, ["new_password"])

    assert system.post("/auth/password/forgot", system.with_captcha({"email": email}))[0] == 202
    # The registration's code, the welcome (no code), then the reset code.
    codes = [mail.code for mail in system.stack.sink.wait_for(email, count=3) if mail.code]
    reset_code = codes[-1]
    reset = {"email": email, "code": reset_code, "new_password": BREACHED}
    status, _, body = system.post("/auth/password/reset", reset)
    assert (status, list(body["fields"])) == (422, ["new_password"])
    # Refused before the code was looked at: the same code resets with a clean password.
    reset["new_password"] = clean_password()
    assert system.post("/auth/password/reset", reset)[0] == 200
    assert system.refusals("breached_password") - before == 3

    assert system.ranges.requests, "the range API was asked"
    for asked in system.ranges.requests:
        assert asked.path == f"/range/{asked.prefix}"
        assert len(asked.prefix) == 5 and all(c in "0123456789ABCDEF" for c in asked.prefix)
        assert asked.add_padding == "true"
    assert sha1_hex(BREACHED)[:5] in {asked.prefix for asked in system.ranges.requests}


def test_a_clean_password_is_accepted_and_its_range_is_asked_once_a_day(system):
    password = clean_password()
    asked = len(system.ranges.requests)
    assert system.post("/auth/register", system.with_captcha({"email": address(), "password": password}))[0] == 201
    assert system.post("/auth/register", system.with_captcha({"email": address(), "password": password}))[0] == 201
    prefixes = [request.prefix for request in system.ranges.requests[asked:]]
    assert prefixes == [sha1_hex(password)[:5]]  # the second answer came from the cache
    lookups = system.metrics()
    assert lookups[("pwned_passwords_lookups_total", (("source", "cache"),))] >= 1


def test_a_range_api_down_or_slow_lets_the_password_through_and_is_counted(system):
    errors, timeouts = system.skipped("error"), system.skipped("timeout")
    system.ranges.stop()
    try:
        status, _, _ = system.post(
            "/auth/register", system.with_captcha({"email": address(), "password": clean_password()})
        )
        assert status == 201  # failing open: the check is skipped, as Kratos does by default
    finally:
        system.ranges.start()
    assert system.skipped("error") == errors + 1

    system.ranges.mode, system.ranges.delay = "slow", 3.0
    try:
        started = time.monotonic()
        status, _, _ = system.post(
            "/auth/register", system.with_captcha({"email": address(), "password": clean_password()})
        )
        waited = time.monotonic() - started
    finally:
        system.ranges.mode = "ok"
    assert status == 201
    assert system.skipped("timeout") == timeouts + 1
    assert waited < 3.0, "the answer did not wait for the slow API"


# --- CAPTCHA ----------------------------------------------------------------------------------

MAIL_SENDING = ("/auth/register", "/auth/resend-code", "/auth/password/forgot", "/auth/login/code")


def body_for(path: str, email: str) -> dict:
    return {"email": email, "password": clean_password()} if path == "/auth/register" else {"email": email}


def test_without_a_passed_captcha_nothing_happens_no_bcrypt_no_mail(system, note):
    """Missing and refused tokens on the four endpoints that send mail, then one accepted registration:
    the refused requests cost the auth process less CPU together than the one bcrypt hash of the accepted
    one (BCRYPT_ROUNDS=12), and the only mail the address ever gets is the accepted registration's."""
    email = address()
    required, invalid = system.refusals("captcha_required"), system.refusals("captcha_invalid")
    verifications = len(system.captcha.verifications)
    cpu_before = system.cpu_seconds()
    for path in MAIL_SENDING:
        status, _, body = system.post(path, body_for(path, email))
        assert (status, body["error"]) == (400, "captcha_required"), path
        status, _, body = system.post(path, {**body_for(path, email), "captcha_token": f"forged-{path}"})
        assert (status, body["error"]) == (400, "captcha_invalid"), path
    refused_cpu = system.cpu_seconds() - cpu_before
    # A missing token never reaches the provider; each refused one did, with the client's address.
    sent = system.captcha.verifications[verifications:]
    assert [item.response for item in sent] == [f"forged-{path}" for path in MAIL_SENDING]
    assert {(item.secret, item.remoteip) for item in sent} == {(system.captcha.secret, "127.0.0.1")}
    assert system.refusals("captcha_required") - required == 4
    assert system.refusals("captcha_invalid") - invalid == 4

    cpu_before = system.cpu_seconds()
    status, _, _ = system.post("/auth/register", system.with_captcha(body_for("/auth/register", email)))
    accepted_cpu = system.cpu_seconds() - cpu_before
    assert status == 201
    note(f"auth's CPU: 8 refused requests {refused_cpu:.3f} s together, one accepted registration {accepted_cpu:.3f} s")
    assert refused_cpu < accepted_cpu / 2, (
        f"8 refused requests took {refused_cpu}s of CPU, one accepted {accepted_cpu}s"
    )
    system.stack.sink.wait_for(email)
    time.sleep(1.0)  # any mail a refused request had queued would have come by now
    assert len(system.stack.sink.mails_to(email)) == 1


def test_a_refused_captcha_answers_alike_whether_or_not_the_address_has_an_account(system):
    password = clean_password()
    known, _ = system.registered_and_confirmed(password)
    for path in ("/auth/resend-code", "/auth/password/forgot", "/auth/login/code"):
        answers = [system.post(path, {"email": email, "captcha_token": "forged"}) for email in (known, address())]
        (status, _, first), (other_status, _, second) = answers
        assert status == other_status == 400
        assert first == second


def test_a_passed_captcha_proceeds_and_a_replayed_token_is_refused(system):
    email = address()
    token = system.captcha.new_token()
    status, _, _ = system.post("/auth/register", {"email": email, "password": clean_password(), "captcha_token": token})
    assert status == 201
    system.stack.sink.wait_for(email)
    status, _, body = system.post("/auth/resend-code", {"email": email, "captcha_token": token})
    assert (status, body["error"]) == (400, "captcha_invalid")


def test_a_captcha_provider_that_does_not_answer_is_a_503_with_retry_after_never_a_pass(system):
    unavailable = system.refusals("captcha_unavailable")
    system.captcha.stop()
    try:
        for path in MAIL_SENDING:
            status, headers, body = system.post(path, system.with_captcha(body_for(path, address())))
            assert (status, body["error"], headers["Retry-After"]) == (503, "service_unavailable", "5"), path
    finally:
        system.captcha.start()
    assert system.refusals("captcha_unavailable") - unavailable == 4
    histogram = system.metrics()
    assert histogram[("captcha_verify_seconds_count", (("outcome", "unavailable"),))] >= 4
    assert histogram[("captcha_verify_seconds_count", (("outcome", "success"),))] >= 1


# --- disposable addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "refused"),
    [
        (DISPOSABLE, True),
        (f"inbox.{DISPOSABLE}", True),
        ("ours-blocked.example", True),  # the operator's file
        (f"eu.{ALLOWED_DISPOSABLE}", False),  # listed, but allowed by the operator
        ("example.org", False),
    ],
)
def test_disposable_addresses_are_refused_with_a_message_the_app_can_show(system, domain, refused):
    status, _, body = system.post(
        "/auth/register", system.with_captcha({"email": address(domain), "password": clean_password()})
    )
    if refused:
        assert (status, body["error"]) == (422, "validation_error")
        assert body["fields"] == {
            "email": [
                "Addresses at disposable-mail services cannot be used for an account. Use an address you will keep."
            ]
        }
    else:
        assert status == 201


# --- nothing of the password leaves --------------------------------------------------------------


def test_the_password_and_its_hash_reach_no_log_line_and_no_span(system):
    """Runs last in this module: every request above has logged and traced by now."""
    password = clean_password()
    system.ranges.add_breached(password)
    assert system.post("/auth/register", system.with_captcha({"email": address(), "password": password}))[0] == 422
    digest = sha1_hex(password)
    forbidden = [password, BREACHED, digest, digest.lower(), digest[5:], digest[5:].lower(), sha1_hex(BREACHED)]

    def register_spans(received):
        return [span for _, span in received if span.name == "pwned passwords range"]

    spans = [span for _, span in system.collector.spans_until(register_spans)]
    assert register_spans([(None, span) for span in spans]), "the range look-ups were traced"
    exported = b"".join(span.SerializeToString() for span in spans)
    log = system.stack.auth.log_text() + system.stack.worker.log_text()
    for secret in forbidden:
        assert secret.encode() not in exported
        assert secret not in log
    # Nor does the prefix that did leave, for the API: beside a request id it would narrow the password.
    assert f"/range/{digest[:5]}" not in log and digest[:5].encode() not in exported
    # The log says what was refused and why, and no more.
    refusals = [json.loads(line) for line in log.splitlines() if '"request refused"' in line]
    assert {line["reason"] for line in refusals} >= {"breached_password", "captcha_required", "disposable_address"}


# --- hCaptcha ---------------------------------------------------------------------------------


def test_hcaptcha_is_verified_alike(start_stack):
    with CaptchaFake(secret="hcaptcha-fake-secret") as captcha:
        stack = start_stack(
            worker=False,
            CAPTCHA_PROVIDER="hcaptcha",
            CAPTCHA_SECRET=captcha.secret,
            CAPTCHA_VERIFY_URL=f"{captcha.url}/siteverify",
        )
        for path in MAIL_SENDING:
            body = body_for(path, address())  # one address each: a code just sent would make the next wait
            status, _, answer = stack.call("POST", path, body)
            assert (status, answer["error"]) == (400, "captcha_required")
            status, _, answer = stack.call("POST", path, {**body, "captcha_token": "forged"})
            assert (status, answer["error"]) == (400, "captcha_invalid")
            status, _, _ = stack.call("POST", path, {**body, "captcha_token": captcha.new_token()})
            assert status == (201 if path == "/auth/register" else 202), path
        assert {(item.secret, item.remoteip) for item in captcha.verifications} == {(captcha.secret, "127.0.0.1")}
        captcha.stop()
        status, headers, answer = http_json(
            "POST", f"{stack.base_url}/auth/login/code", {"email": address(), "captcha_token": "any"}
        )
        assert (status, headers["Retry-After"]) == (503, "5")
