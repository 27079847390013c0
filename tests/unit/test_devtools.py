import random

from devtools import mailsink
from devtools.mailsink import MailSink, free_port, free_ports
from devtools.stack import preflight


def test_preflight_names_each_server_that_does_not_answer_and_how_to_start_it():
    closed = free_port()
    problems = preflight(f"amqp://guest:secret@127.0.0.1:{closed}/%2F", f"redis://127.0.0.1:{closed}/0")
    assert len(problems) == 2
    assert "RabbitMQ does not answer" in problems[0] and "rabbitmq-server -detached" in problems[0]
    assert "secret" not in problems[0]
    assert "Redis does not answer" in problems[1] and "redis-server" in problems[1]


def test_the_tools_read_the_environment_over_dotenv(monkeypatch, tmp_path):
    from devtools.stack import environment

    (tmp_path / ".env").write_text("REDIS_URL=redis://from-file:6379/0\nAUTH_PORT=9001\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", "redis://from-env:6379/0")
    monkeypatch.delenv("AUTH_PORT", raising=False)
    env = environment()
    assert (env["REDIS_URL"], env["AUTH_PORT"]) == ("redis://from-env:6379/0", "9001")


def test_a_mail_sink_stops_once_whatever_is_asked():
    # A stack that failed to start has stopped its sink already; stopping it again must not raise.
    never_started = MailSink()
    never_started.stop()
    sink = MailSink().start()
    sink.stop()
    sink.stop()


def test_free_ports_are_below_the_ephemeral_range_and_never_ones_already_chosen(monkeypatch):
    low = mailsink._ephemeral_low()
    first = free_ports(3)
    assert first + 3 <= low
    # Every draw lands on the port just chosen until the third try: only that one may be returned.
    draws = iter([first, first - 1, first + 2])
    monkeypatch.setattr(random, "randrange", lambda start, stop: next(draws))
    monkeypatch.setattr(mailsink, "_free", lambda port: True)
    assert free_ports(2, taken={first}) == first + 2
