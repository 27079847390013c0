"""The "this wasn't me" press as an incident's end: the rules (domain/recovery.py) and the flow on fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from auth_service.domain.accounts import LeftAddress, NotMeLink, Status, User
from auth_service.domain.recovery import EMAIL_CHANGE_UNDONE, Action, Refusal, plan_press
from common.messaging.messages import Purpose
from tests.unit.test_account_events import change_address, events, not_me_token, press
from tests.unit.test_lifecycle import NEW_PASSWORD, bearer, change_email, code_in, mails_to, reset
from tests.unit.test_sessions import PASSWORD, login, sign_up
from tests.unit.test_sign_in import LAPTOP, ask_code, challenged, set_mfa, sign_in_code, verify_challenge, verify_code

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=3)


def account(email: str, history=(), frozen=False) -> User:
    return User(
        id="owner",
        email=email,
        name=None,
        password_hash="x",
        status=Status.VERIFIED,
        created_at=NOW - timedelta(days=30),
        address_history=tuple(history),
        frozen_at=NOW if frozen else None,
    )


def link(digest: str, email: str, notice: str = "email_changed", expires=NOW + timedelta(days=7)) -> NotMeLink:
    return NotMeLink(digest, email, notice, expires)


# X -> Y (an hour ago) -> Z (now): the links the two changes mailed, and a new sign-in at Z.
CHAIN = (
    LeftAddress("x@example.com", NOW - timedelta(hours=1), NOW - timedelta(hours=1) + WINDOW),
    LeftAddress("y@example.com", NOW - timedelta(minutes=1), NOW - timedelta(minutes=1) + WINDOW),
)
LINKS = (
    link("to-x", "x@example.com"),
    link("to-y", "y@example.com"),
    link("at-z", "z@example.com", "new_sign_in"),
)


def by_digest(links):
    return {found.digest: found for found in links}


def test_a_link_to_the_first_address_restores_it_and_voids_every_other_link():
    plan = plan_press(account("z@example.com", CHAIN), LINKS, "to-x", NOW)
    assert plan.action is Action.RESTORE and plan.left == "z@example.com"
    assert plan.history == ()  # the changes after it go with it: Y has no say any more
    after = by_digest(plan.links)
    assert after["to-x"].used and after["to-y"].void and after["at-z"].void


def test_a_link_of_a_later_address_never_voids_an_earlier_mailboxs_undo():
    plan = plan_press(account("z@example.com", CHAIN), LINKS, "to-y", NOW)
    assert plan.action is Action.RESTORE and plan.history == CHAIN[:1]
    after = by_digest(plan.links)
    assert after["to-y"].used and after["at-z"].void
    assert not after["to-x"].void  # X may still take the account back
    restored = account("y@example.com", plan.history)
    assert plan_press(restored, plan.links, "to-x", NOW).action is Action.RESTORE


def test_a_link_to_the_current_address_secures_in_place_and_keeps_the_earlier_undos():
    plan = plan_press(account("z@example.com", CHAIN), LINKS, "at-z", NOW)
    assert plan.action is Action.SECURE and plan.history == CHAIN
    after = by_digest(plan.links)
    assert after["at-z"].used and not after["to-x"].void and not after["to-y"].void


def test_contest_links_outlive_every_later_press_and_freeze():
    contest = link("contest", "z@example.com", EMAIL_CHANGE_UNDONE, NOW + WINDOW)
    restored = account("x@example.com")
    links = (contest, link("at-x", "x@example.com", "new_sign_in"))
    plan = plan_press(restored, links, "at-x", NOW)
    assert plan.action is Action.SECURE and not by_digest(plan.links)["contest"].void
    contested = plan_press(restored, plan.links, "contest", NOW)
    assert contested.action is Action.CONTEST
    assert all(found.used or found.void for found in contested.links)


def test_presses_that_can_do_nothing_say_why():
    past = NOW + WINDOW + timedelta(minutes=1)
    assert plan_press(account("z@example.com", CHAIN), LINKS, "to-x", past) is Refusal.NO_LONGER_HELD
    assert plan_press(account("z@example.com", CHAIN, frozen=True), LINKS, "to-x", NOW) is Refusal.FROZEN
    assert plan_press(account("z@example.com", CHAIN), LINKS, "unknown", NOW) is Refusal.GONE
    used = plan_press(account("z@example.com", CHAIN), LINKS, "to-x", NOW).links
    assert plan_press(account("x@example.com"), used, "to-y", NOW) is Refusal.GONE


# --- on fakes: the flow ---


def test_an_undo_evicts_a_pending_registration_of_the_address_and_reaches_the_right_account(system, unique_email):
    email, moved = unique_email(), unique_email()
    pair, changed = change_address(system, email, moved)
    owner_id = system.auth.users.by_email(moved).id
    # A pending registration of the old address, as one stored before addresses were reserved would be.
    users = system.auth.users._users
    squatter = {**users.find_one({"_id": owner_id}), "_id": "squatter", "email": email}
    squatter.update(status="pending_verification", not_me=[], address_history=[], outbox=[])
    users.insert_one(squatter)

    assert press(system, not_me_token(changed)).status_code == 200
    assert users.find_one({"_id": "squatter"}) is None
    assert system.auth.users.by_email(email).id == owner_id
    [reset_mail] = mails_to(system, email, "Reset")
    assert reset(system, email, code_in(reset_mail)).status_code == 200
    assert login(system, email, NEW_PASSWORD)  # the owner's own account
    assert system.client.get("/auth/me", headers=bearer(pair["access_token"])).status_code == 401


def test_an_undo_to_an_address_another_confirmed_account_holds_freezes_and_mails_no_code(system, unique_email):
    email, moved = unique_email(), unique_email()
    _, changed = change_address(system, email, moved)
    owner_id = system.auth.users.by_email(moved).id
    users = system.auth.users._users
    holder = {**users.find_one({"_id": owner_id}), "_id": "holder", "email": email, "not_me": [], "outbox": []}
    holder["address_history"] = []
    users.insert_one(holder)  # as data from before addresses were reserved could hold it

    done = press(system, not_me_token(changed))
    assert done.status_code == 200 and "could not be undone" in done.text
    assert system.auth.users.by_id(owner_id).frozen and system.auth.users.by_id(owner_id).email == moved
    assert mails_to(system, email, "Reset") == [] and mails_to(system, moved, "Reset") == []
    assert len(mails_to(system, moved, "frozen")) == 1
    assert system.client.post("/auth/login", json={"email": moved, "password": PASSWORD}).status_code == 401


def test_until_the_reset_no_session_may_move_the_address_or_turn_the_second_factor_off(system, unique_email):
    email, moved = unique_email(), unique_email()
    _, changed = change_address(system, email, moved)
    assert press(system, not_me_token(changed)).status_code == 200
    # A session without the password, by the mailbox (an account with the second factor on gets none).
    assert ask_code(system, email).status_code == 202
    token = verify_code(system, email, sign_in_code(system, email)).json["access_token"]
    refused = change_email(system, token, unique_email())
    assert (refused.status_code, refused.json["error"]) == (401, "invalid_credentials")
    assert "Reset the password first" in refused.json["message"]
    assert set_mfa(system, token, False).status_code == 401
    [reset_mail] = mails_to(system, email, "Reset")
    assert reset(system, email, code_in(reset_mail), new_password=PASSWORD).status_code == 200
    token = verify_code(system, email, sign_in_code_after_reset(system, email)).json["access_token"]
    assert change_email(system, token, unique_email()).status_code == 202


def sign_in_code_after_reset(system, email) -> str:
    system.cooldown_clock.advance(system.auth_settings.resend_cooldown_seconds)
    system.clock.advance(1)
    assert ask_code(system, email).status_code == 202
    return sign_in_code(system, email)


def test_an_undo_tells_both_addresses_and_the_contest_freezes_the_account(system, unique_email):
    email, moved = unique_email(), unique_email()
    _, changed = change_address(system, email, moved)
    assert press(system, not_me_token(changed)).status_code == 200
    [restored] = mails_to(system, email, "was undone")
    assert moved in restored.body
    [undone] = mails_to(system, moved, "changed back")
    assert email in undone.body
    undo_event = events(system, "user.email_changed")[-1]
    assert (undo_event.body["email"], undo_event.body["old_email"]) == (email, moved)
    contest = not_me_token(undone)
    assert "Freeze the account" in system.client.get(f"/auth/not-me?token={contest}").text
    assert press(system, contest).status_code == 200
    assert system.auth.users.by_email(email).frozen
    assert len(mails_to(system, email, "frozen")) == len(mails_to(system, moved, "frozen")) == 1
    [reset_mail] = mails_to(system, email, "Reset")
    assert reset(system, email, code_in(reset_mail)).status_code == 410
    assert system.client.post("/auth/login", json={"email": email, "password": PASSWORD}).status_code == 401
    assert press(system, contest).status_code == 410


def test_the_left_address_is_reserved_for_the_window_only(make_system, unique_email):
    system = make_system({"EMAIL_UNDO_WINDOW_SECONDS": "3600"})
    email, moved = unique_email(), unique_email()
    change_address(system, email, moved)
    body = {"email": email, "password": "somebody else's password"}
    assert system.client.post("/auth/register", json=body).status_code == 409
    system.clock.advance(3601)
    assert system.client.post("/auth/register", json=body).status_code == 201


def test_a_reset_code_applies_only_to_the_account_it_was_issued_for(system, unique_email):
    email, other = unique_email(), unique_email()
    sign_up(system, email)
    sign_up(system, other)
    owner = system.auth.users.by_email(email)
    # A reset code for the account of ``other`` mailed to ``email`` (as a code for an address another
    # account holds now would be): verified by the worker, refused by auth.
    entry = system.auth.codes.request(Purpose.RESET_PASSWORD, system.auth.users.by_email(other).id, email)
    system.auth.codes.issue(owner.id, entry)
    code = code_in(mails_to(system, email, "Reset")[-1])
    answer = system.client.post(
        "/auth/password/reset", json={"email": email, "code": code, "new_password": NEW_PASSWORD}
    )
    assert (answer.status_code, answer.json["error"]) == (410, "code_expired")
    assert system.client.post("/auth/login", json={"email": email, "password": PASSWORD}).status_code == 200


def test_a_sign_in_challenge_started_before_a_press_opens_nothing(system, unique_email):
    email = unique_email()
    sign_up(system, email)
    assert set_mfa(system, login(system, email)["access_token"], True).status_code == 200
    challenge = challenged(system, email, headers=LAPTOP)  # the thief, with the password, before the press
    code = sign_in_code(system, email)
    [on] = mails_to(system, email, "turned on")
    assert press(system, not_me_token(on)).status_code == 200
    answer = verify_challenge(system, challenge, code, headers=LAPTOP)
    assert (answer.status_code, answer.json["error"]) == (410, "code_expired")
