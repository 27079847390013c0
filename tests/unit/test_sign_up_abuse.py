"""Sign-up abuse: the rules (domain/abuse.py), the range cache, and the checks in front of the views, on fakes.

The real processes against local fakes of the outside APIs are in
tests/integration/test_sign_up_abuse.py.
"""

from __future__ import annotations

import hashlib

import pytest

from auth_service.adapters import disposable_domains
from auth_service.adapters.pwned_passwords import RangeCache
from auth_service.bootstrap import sign_up_abuse_checks
from auth_service.config import Settings as AuthSettings
from auth_service.domain import passwords as password_module
from auth_service.domain.abuse import (
    BREACHED_MESSAGE,
    DISPOSABLE_MESSAGE,
    DisposableDomains,
    PasswordDigest,
    PasswordRange,
    Refusal,
    captcha_verdict,
    read_domain_list,
)
from auth_service.domain.errors import CaptchaInvalid, CaptchaRequired, FieldRefused, ServiceUnavailable
from auth_service.ports import CheckUnavailable
from auth_service.service_layer.sign_up_abuse import AbuseChecks
from tests.unit.conftest import BASE_ENV, build_system

BREACHED = "correct horse battery"
CLEAN = "a passphrase nobody leaked"


def sha1(password: str) -> str:
    return hashlib.sha1(password.encode()).hexdigest().upper()  # noqa: S324


def range_of(*passwords: str, padding: int = 0) -> str:
    lines = [f"{sha1(password)[5:]}:{index + 3}" for index, password in enumerate(passwords)]
    lines += [f"{index:035X}:0" for index in range(padding)]
    return "\r\n".join(lines)


# --- the rules --------------------------------------------------------------------------------


def test_only_the_first_five_hex_digits_are_the_prefix_and_the_digest_never_shows_itself():
    digest = PasswordDigest.of("password")
    assert sha1("password") == "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
    assert digest.prefix == "5BAA6"
    assert digest.suffix == bytes.fromhex("01E4C9B93F3F0682250B6CF8331B7EE68FD8")
    assert "5BAA6" not in repr(digest) and "1E4C9" not in repr(digest)


def test_a_range_finds_its_breached_suffixes_and_not_the_padding():
    digest = PasswordDigest.of(BREACHED)
    padded_zero = f"{sha1(CLEAN)[5:]}:0"  # a padding line that happens to be a real suffix: count 0, no breach
    found = PasswordRange.parse(range_of(BREACHED, padding=900) + "\r\n" + padded_zero)
    assert len(found) == 1
    assert found.contains(digest)
    assert not found.contains(PasswordDigest.of(CLEAN))


def test_lines_a_range_api_should_not_send_are_skipped_not_taken_as_breaches():
    body = "\n".join(["garbage", "ZZZ:3", f"{'G' * 35}:4", f"{sha1(BREACHED)[5:]}:x", "", f"{sha1(BREACHED)[5:]}"])
    assert len(PasswordRange.parse(body)) == 0
    lower = f"{sha1(BREACHED)[5:].lower()}:2"  # hex in either case is the same suffix
    assert PasswordRange.parse(lower).contains(PasswordDigest.of(BREACHED))


def test_a_listed_domain_and_its_subdomains_are_refused_and_allowing_wins():
    domains = DisposableDomains(blocked=frozenset({"mailinator.com", "trash.example"}), allowed=frozenset())
    assert domains.refuses("x@mailinator.com")
    assert domains.refuses("x@MX.Mailinator.COM")
    assert domains.refuses("x@a.b.mailinator.com")
    assert not domains.refuses("x@notmailinator.com")  # a label, not a string suffix
    assert not domains.refuses("x@mailinator.com.example")
    assert not domains.refuses("x@com")
    allowing = DisposableDomains(blocked=frozenset({"mailinator.com"}), allowed=frozenset({"team.mailinator.com"}))
    assert not allowing.refuses("x@team.mailinator.com")
    assert not allowing.refuses("x@eu.team.mailinator.com")
    assert allowing.refuses("x@other.mailinator.com")


def test_domain_lists_skip_comments_blank_lines_and_case():
    assert read_domain_list(["# ours", "", "  Spam.Example.  ", "junk.example # since May"]) == {
        "spam.example",
        "junk.example",
    }


def test_the_maintained_list_is_the_packages_and_the_operators_lists_join_it(tmp_path):
    blocked_file = tmp_path / "blocked.txt"
    blocked_file.write_text("# ours\nfile-blocked.example\n")
    allowed_file = tmp_path / "allowed.txt"
    allowed_file.write_text("mailinator.com\n")
    loaded = disposable_domains.load(
        blocked=["setting-blocked.example"],
        allowed=["yopmail.com"],
        blocked_file=blocked_file,
        allowed_file=allowed_file,
    )
    assert len(disposable_domains.maintained_list()) > 1000
    assert "mailinator.com" in disposable_domains.maintained_list()
    assert loaded.refuses("x@guerrillamail.com")
    assert loaded.refuses("x@mx.file-blocked.example")
    assert loaded.refuses("x@setting-blocked.example")
    assert not loaded.refuses("x@mailinator.com")
    assert not loaded.refuses("x@yopmail.com")
    assert not loaded.refuses("x@example.com")


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ({"success": True, "error-codes": []}, True),
        ({"success": False, "error-codes": ["invalid-input-response"]}, False),
        ({"success": False, "error-codes": ["timeout-or-duplicate"]}, False),
        ({"success": "true"}, False),
        ({"success": 1}, False),
        ([], False),
        ("success", False),
        ({"success": False, "error-codes": ["internal-error"]}, None),
    ],
)
def test_only_a_success_of_true_passes_and_the_providers_own_failure_is_no_verdict(answer, verdict):
    assert captcha_verdict(answer) is verdict


# --- the range cache --------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_cache_keeps_a_range_for_its_lifetime_and_drops_the_least_recently_used():
    clock = Clock()
    cache = RangeCache(capacity=2, ttl=86400, clock=clock)
    a, b, c = (PasswordRange.parse(range_of(password)) for password in ("one pass", "two pass", "three pass"))
    cache.put("AAAAA", a)
    cache.put("BBBBB", b)
    assert cache.get("AAAAA") is a  # now the most recently used
    cache.put("CCCCC", c)
    assert len(cache) == 2
    assert cache.get("BBBBB") is None
    assert cache.get("AAAAA") is a and cache.get("CCCCC") is c
    clock.now += 86400
    assert cache.get("AAAAA") is None
    assert len(cache) == 1


def test_a_padded_range_costs_only_its_breached_suffixes():
    found = PasswordRange.parse(range_of(BREACHED, CLEAN, padding=900))
    assert found.size_bytes == 2 * 18


# --- the checks, on fakes ---------------------------------------------------------------------


class Observer:
    def __init__(self):
        self.refusals: list[Refusal] = []
        self.skipped: list[tuple[str, str]] = []

    def refused(self, reason):
        self.refusals.append(reason)

    def unchecked(self, check, reason):
        self.skipped.append((check, reason))


class FakeCaptcha:
    """A provider that passes each of ``good`` once; ``down`` makes it give no verdict."""

    def __init__(self, *good: str):
        self.good = set(good)
        self.asked: list[tuple[str, str | None]] = []
        self.down = False

    def verify(self, token, remote_ip):
        self.asked.append((token, remote_ip))
        if self.down:
            raise CheckUnavailable("timeout")
        if token in self.good:
            self.good.discard(token)
            return True
        return False


class FakeRanges:
    def __init__(self, *breached: str):
        self.bodies: dict[str, list[str]] = {}
        for password in breached:
            self.bodies.setdefault(sha1(password)[:5], []).append(password)
        self.asked: list[str] = []
        self.down = False

    def breached(self, prefix):
        self.asked.append(prefix)
        if self.down:
            raise CheckUnavailable("timeout")
        return PasswordRange.parse(range_of(*self.bodies.get(prefix, []), padding=5))


def test_each_check_refuses_with_its_error_and_counts_its_reason():
    observer = Observer()
    checks = AbuseChecks(
        observer,
        captcha=FakeCaptcha("good"),
        password_ranges=FakeRanges(BREACHED),
        disposable=DisposableDomains(blocked=frozenset({"mailinator.com"})),
    )
    with pytest.raises(CaptchaRequired):
        checks.check_captcha(None, "192.0.2.1")
    with pytest.raises(CaptchaRequired):
        checks.check_captcha("", "192.0.2.1")
    with pytest.raises(CaptchaInvalid):
        checks.check_captcha("forged", "192.0.2.1")
    checks.check_captcha("good", "192.0.2.1")
    with pytest.raises(CaptchaInvalid):  # spent
        checks.check_captcha("good", "192.0.2.1")
    with pytest.raises(FieldRefused) as breached:
        checks.check_new_password(BREACHED, "password")
    assert breached.value.details == {"fields": {"password": [BREACHED_MESSAGE]}}
    checks.check_new_password(CLEAN, "password")
    with pytest.raises(FieldRefused) as disposable:
        checks.check_new_address("x@sub.mailinator.com", "new_email")
    assert disposable.value.details == {"fields": {"new_email": [DISPOSABLE_MESSAGE]}}
    checks.check_new_address("x@example.com", "email")
    assert observer.refusals == [
        Refusal.CAPTCHA_REQUIRED,
        Refusal.CAPTCHA_REQUIRED,
        Refusal.CAPTCHA_INVALID,
        Refusal.CAPTCHA_INVALID,
        Refusal.BREACHED_PASSWORD,
        Refusal.DISPOSABLE_ADDRESS,
    ]


def test_only_the_prefix_reaches_the_range_port():
    ranges = FakeRanges()
    AbuseChecks(Observer(), password_ranges=ranges).check_new_password(CLEAN, "password")
    assert ranges.asked == [sha1(CLEAN)[:5]]


def test_a_range_api_that_does_not_answer_is_skipped_and_counted_unless_failing_closed():
    ranges = FakeRanges(BREACHED)
    ranges.down = True
    observer = Observer()
    AbuseChecks(observer, password_ranges=ranges).check_new_password(BREACHED, "password")
    assert observer.skipped == [("pwned_passwords", "timeout")] and observer.refusals == []
    closed = Observer()
    with pytest.raises(ServiceUnavailable) as unavailable:
        AbuseChecks(closed, password_ranges=ranges, breach_check_fails_closed=True).check_new_password(
            CLEAN, "password"
        )
    assert unavailable.value.details["retry_after"] == 5
    assert closed.refusals == [Refusal.BREACH_CHECK_UNAVAILABLE]


def test_a_captcha_that_cannot_be_checked_is_not_passed():
    captcha = FakeCaptcha("good")
    captcha.down = True
    observer = Observer()
    with pytest.raises(ServiceUnavailable):
        AbuseChecks(observer, captcha=captcha).check_captcha("good", "192.0.2.1")
    assert observer.refusals == [Refusal.CAPTCHA_UNAVAILABLE]


def test_settings_turn_on_only_what_they_name():
    none = sign_up_abuse_checks(AuthSettings.from_env(BASE_ENV), Observer())
    none.check_captcha(None, None)
    none.check_new_password(BREACHED, "password")
    none.check_new_address("x@mailinator.com", "email")
    ours = sign_up_abuse_checks(
        AuthSettings.from_env({**BASE_ENV, "BLOCKED_EMAIL_DOMAINS": "spam.example"}),
        Observer(),
    )
    ours.check_new_address("x@mailinator.com", "email")  # the maintained list only with BLOCK_DISPOSABLE_ADDRESSES
    with pytest.raises(FieldRefused):
        ours.check_new_address("x@spam.example", "email")


def test_a_captcha_provider_needs_its_secret_and_a_secret_needs_a_provider():
    with pytest.raises(ValueError, match="CAPTCHA_SECRET"):
        AuthSettings.from_env({**BASE_ENV, "CAPTCHA_PROVIDER": "turnstile"})
    with pytest.raises(ValueError, match="CAPTCHA_PROVIDER"):
        AuthSettings.from_env({**BASE_ENV, "CAPTCHA_SECRET": "x" * 20})
    with pytest.raises(ValueError, match="CAPTCHA_PROVIDER"):
        AuthSettings.from_env({**BASE_ENV, "CAPTCHA_PROVIDER": "recaptcha", "CAPTCHA_SECRET": "x" * 20})
    assert AuthSettings.from_env(BASE_ENV).pwned_passwords_timeout_seconds == 2.0


# --- in front of the views --------------------------------------------------------------------


class BcryptCalls:
    """Every bcrypt call the auth service makes, counted (hash and check alike)."""

    def __init__(self, monkeypatch):
        self.count = 0
        real = password_module.bcrypt

        counter = self

        class Counting:
            gensalt = staticmethod(real.gensalt)

            @staticmethod
            def hashpw(*args):
                counter.count += 1
                return real.hashpw(*args)

            @staticmethod
            def checkpw(*args):
                counter.count += 1
                return real.checkpw(*args)

        monkeypatch.setattr(password_module, "bcrypt", Counting)


@pytest.fixture
def guarded():
    captcha = FakeCaptcha()
    ranges = FakeRanges(BREACHED)
    observer = Observer()
    checks = AbuseChecks(
        observer,
        captcha=captcha,
        password_ranges=ranges,
        disposable=DisposableDomains(blocked=frozenset({"mailinator.com"})),
    )
    system = build_system(abuse_checks=checks)
    return system, captcha, ranges, observer


MAIL_SENDING = [
    ("/auth/register", {"email": "ada@example.com", "password": CLEAN}),
    ("/auth/resend-code", {"email": "ada@example.com"}),
    ("/auth/password/forgot", {"email": "ada@example.com"}),
    ("/auth/login/code", {"email": "ada@example.com"}),
]


@pytest.mark.parametrize(("path", "body"), MAIL_SENDING)
def test_a_refused_captcha_costs_no_lookup_no_bcrypt_and_no_mail(guarded, monkeypatch, path, body):
    system, captcha, _, observer = guarded
    token = "good-once"
    captcha.good.add(token)
    assert system.client.post("/auth/register", json={**MAIL_SENDING[0][1], "captcha_token": token}).status_code == 201
    mails = len(system.outbox)
    bcrypt_calls = BcryptCalls(monkeypatch)
    lookups = []
    monkeypatch.setattr(system.auth.users, "by_email", lambda email: lookups.append(email))
    missing = system.client.post(path, json=body)
    assert (missing.status_code, missing.json["error"]) == (400, "captcha_required")
    refused = system.client.post(path, json={**body, "captcha_token": "forged"})
    assert (refused.status_code, refused.json["error"]) == (400, "captcha_invalid")
    replayed = system.client.post(path, json={**body, "captcha_token": token})
    assert (replayed.status_code, replayed.json["error"]) == (400, "captcha_invalid")
    assert bcrypt_calls.count == 0
    assert lookups == []
    assert len(system.outbox) == mails
    assert observer.refusals == [Refusal.CAPTCHA_REQUIRED, Refusal.CAPTCHA_INVALID, Refusal.CAPTCHA_INVALID]


def test_the_captcha_is_checked_with_the_client_address_and_the_token_reaches_no_use_case(guarded):
    system, captcha, _, _ = guarded
    captcha.good.add("good")
    answer = system.client.post(
        "/auth/register",
        json={"email": "ada@example.com", "password": CLEAN, "captcha_token": "good"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert answer.status_code == 201
    assert captcha.asked == [("good", "198.51.100.7")]
    assert system.codes_for("ada@example.com")


def test_the_provider_down_is_a_503_with_retry_after_not_a_pass(guarded):
    system, captcha, _, _ = guarded
    captcha.good.add("good")
    captcha.down = True
    answer = system.client.post("/auth/password/forgot", json={"email": "ada@example.com", "captcha_token": "good"})
    assert (answer.status_code, answer.json["error"], answer.headers["Retry-After"]) == (
        503,
        "service_unavailable",
        "5",
    )


def test_a_breached_password_is_refused_on_register_reset_and_change_with_the_field_named(guarded):
    system, captcha, ranges, observer = guarded
    email = "ada@example.com"
    captcha.good.update({"t1", "t2", "t3"})
    refused = system.client.post("/auth/register", json={"email": email, "password": BREACHED, "captcha_token": "t1"})
    assert (refused.status_code, refused.json["fields"]) == (422, {"password": [BREACHED_MESSAGE]})
    assert system.client.post("/auth/register", json={"email": email, "password": CLEAN, "captcha_token": "t2"})
    [code] = system.codes_for(email)
    assert system.client.post("/auth/confirm", json={"email": email, "code": code}).status_code == 200
    tokens = system.client.post("/auth/login", json={"email": email, "password": CLEAN}).json
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    change = {"current_password": CLEAN, "new_password": BREACHED}
    refused = system.client.post("/auth/password/change", json=change, headers=bearer)
    assert (refused.status_code, refused.json["fields"]) == (422, {"new_password": [BREACHED_MESSAGE]})
    # Without a well-signed token the 401 comes first, and no look-up is made for the caller.
    asked = len(ranges.asked)
    unsigned = system.client.post("/auth/password/change", json=change, headers={"Authorization": "Bearer forged"})
    assert unsigned.status_code == 401 and len(ranges.asked) == asked
    assert system.client.post("/auth/password/forgot", json={"email": email, "captcha_token": "t3"}).status_code == 202
    reset_code = system.codes_for(email)[-1]
    reset = {"email": email, "code": reset_code, "new_password": BREACHED}
    refused = system.client.post("/auth/password/reset", json=reset)
    assert (refused.status_code, refused.json["fields"]) == (422, {"new_password": [BREACHED_MESSAGE]})
    # The refusal came before the code was looked at: it still resets, with a clean password.
    reset["new_password"] = "another clean passphrase"
    assert system.client.post("/auth/password/reset", json=reset).status_code == 200
    assert observer.refusals.count(Refusal.BREACHED_PASSWORD) == 3


def test_a_disposable_address_is_refused_at_register_and_at_email_change(guarded):
    system, captcha, _, _ = guarded
    captcha.good.update({"t1", "t2"})
    refused = system.client.post(
        "/auth/register", json={"email": "x@inbox.mailinator.com", "password": CLEAN, "captcha_token": "t1"}
    )
    assert (refused.status_code, refused.json["fields"]) == (422, {"email": [DISPOSABLE_MESSAGE]})
    refused = system.client.post(
        "/auth/email/change", json={"new_email": "x@mailinator.com", "password": CLEAN}, headers={}
    )
    assert (refused.status_code, refused.json["fields"]) == (422, {"new_email": [DISPOSABLE_MESSAGE]})


def test_the_document_shows_the_captcha_field_and_its_errors(guarded):
    system, *_ = guarded
    document = system.client.get("/openapi.json").json
    schemas = document["components"]["schemas"]
    for name in ("RegisterRequest", "ResendRequest", "ForgotPasswordRequest", "LoginCodeRequest"):
        assert "captcha_token" in schemas[name]["properties"], name
    register = document["paths"]["/auth/register"]["post"]["responses"]
    assert "captcha_required" in register["400"]["description"]
    assert "CAPTCHA provider" in register["503"]["description"]
    assert "breach" in register["422"]["description"] and "disposable" in register["422"]["description"]
    change = document["paths"]["/auth/password/change"]["post"]["responses"]
    assert "breach" in change["422"]["description"]
