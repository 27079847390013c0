"""How many guesses one address can get: attempts per code, codes per hour and per day.

docs/security.md derives the bound; ``test_the_defaults_keep_a_day_of_guessing_below_one_in_ten_thousand``
recomputes it from the settings' defaults so that raising one of them fails here first.
"""

from __future__ import annotations

import threading

from limits import parse_many

from auth_service.config import Settings as AuthSettings
from common.messaging.consumer import Result
from common.messaging.messages import CodeRequested, Purpose
from email_service.config import Settings as WorkerSettings
from email_service.domain.codes import CODE_DIGITS, Presented, Slot
from tests.fakes import as_delivered
from tests.unit.conftest import BASE_ENV

PASSWORD = "correct horse battery"
HOUR, DAY = 3600, 86400


def register(system, email):
    assert system.client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201


def confirm(system, email, code):
    return system.client.post("/auth/confirm", json={"email": email, "code": code})


def wrong_code(right: str) -> str:
    return f"{(int(right) + 1) % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def resend(system, email):
    system.cooldown_clock.advance(system.auth_settings.resend_cooldown_seconds)
    assert system.client.post("/auth/resend-code", json={"email": email}).status_code == 202


def test_the_defaults_keep_a_day_of_guessing_below_one_in_ten_thousand_per_account():
    worker = WorkerSettings.from_env({"APP_ENV": "development"})
    auth = AuthSettings.from_env({"APP_ENV": "development"})
    space = 10**CODE_DIGITS
    assert (worker.max_codes_per_day, worker.code_max_attempts) == (10, 5)

    # Per account, over every purpose: the worker judges at most CODE_GUESSES_PER_ACCOUNT_PER_DAY wrong codes
    # of an account in any 24 hours (then refuses every code of it), so at most that many guesses plus the
    # one that would be right are judged: 51 / 10^6.
    assert worker.code_guesses_per_account_per_day == 50
    assert (worker.code_guesses_per_account_per_day + 1) / space < 1e-4  # 5.1e-5

    # Per purpose and address, the codes alone: those whose guesses can fall in one day were sent in that
    # day or in the code lifetime before it, shorter than an hour, so it adds at most the hourly cap.
    assert worker.code_ttl_seconds <= HOUR
    codes = worker.max_codes_per_day + worker.max_codes_per_hour
    assert codes * worker.code_max_attempts / space < 1e-4  # 75 guesses: 7.5e-5
    # Without the account budget, the purposes that open a confirmed account (reset and sign-in; an address
    # change needs a session, a registration code only confirms a pending account) would add up past it.
    assert 2 * codes * worker.code_max_attempts / space > 1e-4

    # One client's guesses at one address: the per-(address, IP) limit, wrong codes only.
    [per_day] = [item for item in parse_many(auth.ratelimit_confirm_per_address) if item.get_expiry() == DAY]
    assert per_day.amount <= worker.max_codes_per_day * worker.code_max_attempts
    assert auth.ratelimit_confirm_per_address == AuthSettings.fields["ratelimit_confirm_per_address"].default


def test_an_accounts_guesses_over_every_purpose_share_one_daily_budget(make_system, unique_email):
    from tests.unit.test_lifecycle import code_in, forgot, mails_to, reset
    from tests.unit.test_sign_in import ask_code, sign_in_code, verify_code

    system = make_system({"CODE_GUESSES_PER_ACCOUNT_PER_DAY": "7", "RESEND_COOLDOWN_SECONDS": "0"})
    email = unique_email()
    register(system, email)
    [registration] = system.codes_for(email)
    confirm(system, email, wrong_code(registration))  # 1: a registration code's guess counts too
    assert confirm(system, email, registration).status_code == 200
    spent = 1
    while spent < 7:
        assert forgot(system, email).status_code == 202
        reset_code = mails_to(system, email, "Reset")[-1]
        answer = reset(system, email, wrong_code(code_in(reset_code)))
        assert answer.status_code in (400, 429)
        spent += 1
        if spent < 7:
            assert ask_code(system, email).status_code == 202
            assert verify_code(system, email, wrong_code(sign_in_code(system, email))).status_code in (400, 429)
            spent += 1
    # Spent over three purposes: every code of the account is refused now, the right one too.
    assert ask_code(system, email).status_code == 202
    refused = verify_code(system, email, sign_in_code(system, email))
    assert (refused.status_code, refused.json["error"]) == (429, "too_many_attempts")
    assert system.store.guesses_spent(system.auth.users.by_email(email).id, system.clock()) == 7


def test_a_code_takes_exactly_max_attempts_guesses(make_system, unique_email):
    system = make_system({"CODE_MAX_ATTEMPTS": "3"})
    email = unique_email()
    register(system, email)
    [code] = system.codes_for(email)
    first, second = confirm(system, email, wrong_code(code)), confirm(system, email, wrong_code(code))
    assert [first.json["attempts_left"], second.json["attempts_left"]] == [2, 1]
    burned = confirm(system, email, wrong_code(code))  # the 3rd wrong guess burns the code
    assert (burned.status_code, burned.json["error"]) == (429, "too_many_attempts")
    after = confirm(system, email, code)  # even the right code is refused now
    assert (after.status_code, after.json["error"]) == (429, "too_many_attempts")


def test_the_last_allowed_guess_may_still_be_right(make_system, unique_email):
    system = make_system({"CODE_MAX_ATTEMPTS": "3"})
    email = unique_email()
    register(system, email)
    [code] = system.codes_for(email)
    for _ in range(2):
        assert confirm(system, email, wrong_code(code)).status_code == 400
    assert confirm(system, email, code).status_code == 200


def test_parallel_guesses_spend_no_more_than_max_attempts(make_system, unique_email):
    system = make_system({"CODE_MAX_ATTEMPTS": "5"})
    email = unique_email()
    register(system, email)
    [code] = system.codes_for(email)
    verdicts = []
    start = threading.Barrier(12)

    def guess(n):
        start.wait()
        guess_code = f"{(int(code) + 1 + n) % 10**CODE_DIGITS:0{CODE_DIGITS}d}"
        slot = Slot(Purpose.VERIFY_EMAIL, email)
        presented = Presented.code(system.worker_settings.code_hmac_key.get_secret_value(), slot, guess_code)
        verdicts.append(system.store.attempt(slot, presented, f"guess-{n}", 5).verdict.value)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert verdicts.count("invalid_code") == 4
    assert verdicts.count("too_many_attempts") == 8
    assert system.store.get(Slot(Purpose.VERIFY_EMAIL, email)).burned


def test_hourly_cap_sends_the_nth_code_and_not_the_next(make_system, unique_email):
    system = make_system({"MAX_CODES_PER_HOUR": "3", "MAX_CODES_PER_DAY": "10"})
    email = unique_email()
    register(system, email)  # code 1
    resend(system, email)  # code 2
    resend(system, email)  # code 3
    assert len(system.codes_for(email)) == 3
    resend(system, email)  # refused by the worker, answered alike
    assert len(system.codes_for(email)) == 3
    system.clock.advance(HOUR + 1)  # all three leave the window
    resend(system, email)
    assert len(system.codes_for(email)) == 4


def test_daily_cap_sends_the_nth_code_and_not_the_next(make_system, unique_email):
    system = make_system({"MAX_CODES_PER_HOUR": "2", "MAX_CODES_PER_DAY": "4"})
    email = unique_email()
    register(system, email)
    resend(system, email)
    system.clock.advance(HOUR + 1)
    resend(system, email)
    resend(system, email)
    assert len(system.codes_for(email)) == 4
    system.clock.advance(HOUR + 1)  # the hour is clear, the day is not
    resend(system, email)
    assert len(system.codes_for(email)) == 4
    system.clock.advance(DAY - 2 * (HOUR + 1) + 1)  # the first two codes leave the day
    resend(system, email)
    assert len(system.codes_for(email)) == 5


def test_a_refused_code_request_is_acked_without_mail(make_system, unique_email):
    system = make_system({"MAX_CODES_PER_HOUR": "1"})
    email = unique_email()
    register(system, email)
    resend(system, email)
    code_requests = [d for d in system.broker.deliveries if d.message.type == CodeRequested.TYPE]
    assert len(code_requests) == 2  # the registration's and the resend's
    delivery = code_requests[1]
    assert delivery.result == Result.ack()
    assert len(system.codes_for(email)) == 1
    # A redelivery of the message that did send a code is not a new code either.
    first = system.broker.sent_to(system.worker_settings.account_creation_queue)[0]
    handlers_result = system.broker.handlers[system.worker_settings.account_creation_queue](
        as_delivered(first), system.broker
    )
    assert handlers_result == Result.ack()
    assert len(system.codes_for(email)) == 1


def test_base_env_keeps_the_documented_defaults_for_guessing():
    worker = WorkerSettings.from_env(BASE_ENV)
    assert (worker.code_max_attempts, worker.max_codes_per_hour, worker.max_codes_per_day) == (5, 5, 10)
