"""100 users registering and confirming at the same time: none is lost."""

from devtools.load import register_and_confirm_many


def test_100_users_register_and_confirm_concurrently_with_none_lost(stack):
    runs = register_and_confirm_many(stack, users=100, concurrency=25)
    incomplete = [(run.email, run.registered, run.confirmed, run.logged_in) for run in runs if not run.complete]
    assert incomplete == []
    for run in runs:
        # One code each (the welcome of the confirmation aside).
        assert len([mail for mail in stack.sink.mails_to(run.email) if mail.code is not None]) == 1
