"""Pieces of `make bench` (bench/compare.py) that run in a moment, apart from the broker:
the messages it pre-queues, the counting SMTP sinks, the peers' job, and the MIME benchmark.

The whole benchmark, even with --quick, takes longer than a unit test should
(Celery alone needs seconds to start and stop); its table arithmetic is in
test_bench_stats.py and a drain on the real servers in
tests/integration/test_bench_compare.py.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import ssl
import time

import fakeredis
import pytest

from bench import mime_build
from bench import sink as smtp_sink
from bench.peers import MailJob, PeerConfig
from bench.workload import Leftovers, code_request
from common.messaging.consumer import Outcome
from devtools.mailsink import free_port
from devtools.stack import names_for

KEY = "unit-test-code-key-that-is-long-enough-0123456789"


def test_the_benchmark_queues_what_auth_publishes_for_a_registration(system):
    status = system.client.post("/auth/register", json={"email": "ann@example.com", "password": "a long password"})
    assert status.status_code == 201
    [published] = system.broker.sent_to(system.auth_settings.account_creation_queue)
    ours = code_request("bob@example.com", "Bob")

    assert ours.type == published.type
    assert ours.body.keys() == published.body.keys()
    assert isinstance(ours.body["requested_at"], float)
    assert len(ours.body["user_id"]) == len(published.body["user_id"]) == 32
    assert len(ours.message_id) == len(published.message_id) == 32
    int(ours.message_id, 16)  # hex, from secrets, as the worker's code derivation expects
    ours_properties, published_properties = ours.properties(), published.properties()
    for name in ("content_type", "delivery_mode", "type", "reply_to", "correlation_id"):
        assert getattr(ours_properties, name) == getattr(published_properties, name), name
    assert ours_properties.headers.keys() == published_properties.headers.keys()


def test_the_worker_mails_a_code_for_a_message_the_benchmark_queues(system):
    queue = system.worker_settings.account_creation_queue
    system.broker.publish(queue, code_request("carol@example.com", "Carol"))
    [delivery] = system.broker.deliveries
    assert delivery.result.outcome is Outcome.ACK
    assert system.codes_for("carol@example.com")


def peer_config(sink: smtp_sink.CountingSink, reuse: bool) -> PeerConfig:
    reuse_setting = "true" if reuse else "false"
    return PeerConfig.from_env(
        {**sink.smtp_settings(), "CODE_HMAC_KEY": KEY, "REDIS_KEY_PREFIX": "t", "BENCH_SMTP_REUSE": reuse_setting}
    )


@pytest.fixture(scope="module")
def plain_sink():
    sink = smtp_sink.CountingSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def tls_sink(tmp_path_factory):
    certificate = smtp_sink.self_signed_certificate(tmp_path_factory.mktemp("tls"))
    sink = smtp_sink.CountingSink(certificate, delay_seconds=0.005).start()
    yield sink
    sink.stop()


def wait_for_count(sink: smtp_sink.CountingSink, count: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while sink.count < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return sink.count


@pytest.mark.parametrize("reuse", [True, False], ids=["kept-connection", "connection-per-mail"])
def test_the_peer_job_stores_the_registration_and_mails_text_and_html(plain_sink, reuse):
    client = fakeredis.FakeRedis()
    job = MailJob(peer_config(plain_sink, reuse), client)
    before = plain_sink.count
    try:
        for index in range(3):
            job.run(f"message-{index}", f"user-{index}", f"user{index}@example.com", "Name", 1.5)
    finally:
        job.close()
    assert wait_for_count(plain_sink, before + 3) == before + 3
    [key] = client.keys("t:pending:*")[:1]
    stored = {name.decode(): value.decode() for name, value in client.hgetall(key).items()}
    assert stored["attempts"] == "0" and stored["message_id"].startswith("message-")
    assert len(stored["code_digest"]) == 64
    assert 0 < client.ttl(key) <= 600


def test_the_peers_mail_what_the_worker_mails(system, plain_sink):
    job = MailJob(peer_config(plain_sink, reuse=True), fakeredis.FakeRedis())
    ours = job._message("dan@example.com", "Dan", "123456")
    context = {"name": "Dan", "code": "123456", "validity_seconds": 600, "link_token": "unused"}
    workers = system.mailer.render("verify_email", "dan@example.com", context)
    assert [part.get_content_type() for part in ours.iter_parts()] == ["text/plain", "text/html"]
    assert ours["Subject"] == workers.subject
    assert ours.get_body(("plain",)).get_content().rstrip("\n") == workers.body.rstrip("\n")
    assert ours.get_body(("html",)).get_content().rstrip("\n") == workers.html.rstrip("\n")


@pytest.mark.parametrize("reuse", [True, False], ids=["kept-connection", "connection-per-mail"])
def test_the_peer_job_logs_in_over_starttls_trusting_only_the_throwaway_certificate(tls_sink, reuse):
    job = MailJob(peer_config(tls_sink, reuse), fakeredis.FakeRedis())
    before = tls_sink.count
    try:
        job.run("message-1", "user-1", "erin@example.com", None, 1.0)
        job.run("message-2", "user-2", "frank@example.com", None, 2.0)
    finally:
        job.close()
    assert wait_for_count(tls_sink, before + 2) == before + 2


def test_the_tls_sink_refuses_mail_before_starttls_and_a_wrong_login(tls_sink):
    with smtplib.SMTP("127.0.0.1", tls_sink.port, timeout=5) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("a@example.com", ["b@example.com"], "Subject: x\r\n\r\nbody")
        assert refused.value.smtp_code == 530  # "Must issue a STARTTLS command first"
    context = ssl.create_default_context(cafile=str(tls_sink.tls.certificate))
    with smtplib.SMTP("127.0.0.1", tls_sink.port, timeout=5) as smtp:
        smtp.starttls(context=context)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(smtp_sink.LOGIN, "not the password")


def test_the_tls_sink_delays_each_reply(tls_sink):
    # A lower bound only: each of the three replies (greeting, EHLO, NOOP) waits at least the delay.
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", tls_sink.port, timeout=5) as smtp:
        smtp.ehlo()
        smtp.noop()
        elapsed = time.perf_counter() - started
    assert elapsed >= 3 * 0.005


def test_a_certificate_not_the_sinks_is_refused(tls_sink, tmp_path):
    other = smtp_sink.self_signed_certificate(tmp_path)
    context = ssl.create_default_context(cafile=str(other.certificate))
    with smtplib.SMTP("127.0.0.1", tls_sink.port, timeout=5) as smtp, pytest.raises(ssl.SSLCertVerificationError):
        smtp.starttls(context=context)


def test_leftovers_that_cannot_be_removed_are_named(caplog):
    closed = free_port()  # neither server answers there
    servers = (f"amqp://guest:guest@127.0.0.1:{closed}/%2F", f"redis://127.0.0.1:{closed}/0")
    runs = [Leftovers(*servers, plain_queues=["q.rpc"]), Leftovers(*servers)]
    runs[1].add_names(names_for("bench-compare-0123456789"))
    merged = Leftovers.all_of(runs)
    assert merged.plain_queues == ["q.rpc"]
    assert merged.work_queues == [
        "bench-compare-0123456789.account_creation",
        "bench-compare-0123456789.confirm_email_code",
        "bench-compare-0123456789.account_confirmed",
        "bench-compare-0123456789.account_notifications",
        "bench-compare-0123456789.webhooks",
    ]
    assert merged.redis_prefixes == ["bench-compare-0123456789:email", "bench-compare-0123456789:ratelimit"]

    merged.remove(patience=0)

    errors = [record.getMessage() for record in caplog.records if record.name == "bench"]
    assert len(errors) == 3
    assert "bench-compare-0123456789.account_creation" in errors[0]
    assert "q.rpc" in errors[1]
    assert "bench-compare-0123456789:email" in errors[2]


@pytest.fixture
def indexed_mongo(monkeypatch):
    from mongomock.collection import Collection, Cursor
    from mongomock.store import CollectionStore

    from bench import indexed_mongo

    for owner, name in [
        *[(Collection, name) for name in indexed_mongo.TIMED_METHODS],
        (Cursor, "__next__"),
        (Collection, "_iter_documents"),
        (Collection, "_ensure_uniques"),
        (CollectionStore, "__setitem__"),
        (CollectionStore, "create_index"),
        (CollectionStore, "_remove_expired_documents"),
    ]:
        monkeypatch.setattr(owner, name, getattr(owner, name))  # put back after the test
    indexed_mongo.install()
    return indexed_mongo


def _counting_scans(monkeypatch) -> list[int]:
    import mongomock

    tested: list[int] = []
    applies = mongomock.collection.filter_applies

    def counted(*args):
        tested.append(1)
        return applies(*args)

    monkeypatch.setattr(mongomock.collection, "filter_applies", counted)
    return tested


def test_the_mongodb_stand_in_finds_by_index_what_a_scan_finds(indexed_mongo, monkeypatch):
    import mongomock

    users = mongomock.MongoClient()["auth"]["users"]
    users.insert_one({"_id": "before", "email": "before@example.com", "status": "pending"})
    users.create_index([("email", 1)], unique=True, name="email_unique")
    for index in range(50):
        users.insert_one({"_id": f"u{index}", "email": f"e{index}@example.com", "status": "pending"})
    tested = _counting_scans(monkeypatch)
    assert users.find_one({"email": "e9@example.com"})["_id"] == "u9"
    assert users.find_one({"_id": "u30"})["email"] == "e30@example.com"
    assert users.find_one({"email": "before@example.com"})["_id"] == "before"  # stored before the index
    assert users.find_one({"email": "nobody@example.com"}) is None  # a value never seen: no scan either
    users.insert_one({"_id": "u50", "email": "e50@example.com", "status": "pending"})
    assert tested == []  # from the index: no document tested by a scan, the insert's unique check included

    assert users.find_one({"email": "e5@example.com"})["_id"] == "u5"
    assert users.find_one({"email": "e5@example.com", "status": "verified"}) is None  # the whole filter applies
    users.update_one({"_id": "u5"}, {"$set": {"email": "moved@example.com"}})
    assert users.find_one({"email": "e5@example.com"}) is None  # moved off in place: the entry is not believed
    assert users.find_one({"email": "moved@example.com"})["_id"] == "u5"  # and the new value is filed
    users.replace_one({"_id": "u6"}, {"email": "replaced@example.com", "status": "pending"})
    assert users.find_one({"email": "replaced@example.com"})["_id"] == "u6"
    users.insert_one({"_id": "new", "email": "e5@example.com", "status": "pending"})
    assert users.find_one({"email": "e5@example.com"})["_id"] == "new"
    assert users.update_one({"_id": "u7", "status": "pending"}, {"$set": {"status": "verified"}}).modified_count == 1
    users.delete_one({"_id": "u7"})
    assert users.find_one({"email": "e7@example.com"}) is None
    tested.clear()
    assert users.count_documents({"status": "pending"}) == 52  # other queries scan as mongomock does
    assert len(tested) == 52


def test_the_mongodb_stand_in_answers_other_single_field_indexes_by_value_and_by_range(indexed_mongo, monkeypatch):
    from datetime import UTC, datetime, timedelta

    import mongomock

    users = mongomock.MongoClient()["auth"]["users"]
    users.create_index([("outbox_due_at", 1)], sparse=True, name="outbox_due")
    users.create_index([("address_history.email", 1)], name="left_addresses")
    now = datetime.now(UTC).replace(microsecond=0)
    for index in range(40):
        users.insert_one({"_id": f"u{index}", "address_history": [{"email": f"old{index}@example.com"}]})
    users.update_one({"_id": "u3"}, {"$set": {"outbox_due_at": now - timedelta(seconds=5)}})
    users.update_one({"_id": "u4"}, {"$set": {"outbox_due_at": now + timedelta(hours=1)}})
    tested = _counting_scans(monkeypatch)
    assert [user["_id"] for user in users.find({"address_history.email": "old7@example.com"})] == ["u7"]
    assert [user["_id"] for user in users.find({"outbox_due_at": {"$lte": now}})] == ["u3"]
    assert sorted(user["_id"] for user in users.find({"outbox_due_at": {"$exists": True}})) == ["u3", "u4"]
    reserving = {"address_history": {"$elemMatch": {"email": "old9@example.com", "undo_until": {"$exists": False}}}}
    assert [user["_id"] for user in users.find(reserving)] == ["u9"]
    assert len(tested) <= 6  # only the documents the indexes offered, not the 40
    users.update_one({"_id": "u3"}, {"$unset": {"outbox_due_at": ""}})
    assert list(users.find({"outbox_due_at": {"$lte": now}})) == []
    users.update_one({"_id": "u7"}, {"$push": {"address_history": {"email": "older7@example.com"}}})
    assert [user["_id"] for user in users.find({"address_history.email": "older7@example.com"})] == ["u7"]
    assert [user["_id"] for user in users.find({"address_history.email": "old7@example.com"})] == ["u7"]


def test_the_mongodb_stand_in_still_refuses_a_duplicate_of_a_unique_value(indexed_mongo):
    import mongomock
    import pymongo.errors

    users = mongomock.MongoClient()["auth"]["users"]
    users.create_index([("email", 1)], unique=True, name="email_unique")
    users.insert_one({"_id": "a", "email": "a@example.com"})
    users.insert_one({"_id": "b", "email": "b@example.com"})
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        users.insert_one({"_id": "c", "email": "a@example.com"})
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        users.update_one({"_id": "b"}, {"$set": {"email": "a@example.com"}})
    assert users.find_one({"email": "a@example.com"})["_id"] == "a"
    assert users.find_one({"email": "b@example.com"})["_id"] == "b"  # the update was rolled back
    assert users.find_one({"_id": "c"}) is None


def test_the_mongodb_stand_in_expires_at_most_once_a_second(indexed_mongo, monkeypatch):
    from datetime import UTC, datetime, timedelta

    import mongomock

    clock = [0.0]
    monkeypatch.setattr(indexed_mongo.time, "monotonic", lambda: clock[0])
    sessions = mongomock.MongoClient()["auth"]["sessions"]
    sessions.create_index([("expires_at", 1)], expireAfterSeconds=0, name="expiry")
    now = datetime.now(UTC)
    sessions.insert_one({"_id": "old", "expires_at": now - timedelta(seconds=1)})
    sessions.insert_one({"_id": "young", "expires_at": now + timedelta(hours=1)})
    clock[0] += 1.1
    assert sessions.find_one({"_id": "old"}) is None  # a second on: the read expires
    sessions.insert_one({"_id": "older", "expires_at": now - timedelta(seconds=1)})
    clock[0] += 0.5
    assert sessions.find_one({"_id": "older"}) is not None  # within the second: not expired yet
    clock[0] += 0.6
    assert sessions.find_one({"_id": "older"}) is None
    assert sessions.find_one({"_id": "young"}) is not None


@pytest.mark.parametrize("locale", ["en", "pt-BR"])
def test_the_mime_benchmark_builds_the_same_mail_both_ways(locale):
    mail = mime_build.rendered(locale)
    ours, theirs = (
        email.message_from_bytes(built, policy=email.policy.default)
        for built in (mail.as_bytes(), mime_build.by_email_message(mail))
    )
    for kind in ("plain", "html"):
        # set_content ends a part with a line break; the worker's part ends where its text does.
        assert ours.get_body((kind,)).get_content().rstrip("\r\n") == theirs.get_body((kind,)).get_content().rstrip(
            "\r\n"
        )
    assert ours["Subject"] == theirs["Subject"] == mail.subject
    figures = mime_build.measure(mails=3, reps=1)
    assert set(figures) == {f"{way}_{lang}_us" for way in ("hand_built", "email_message") for lang in ("en", "pt-BR")}


def test_the_mongodb_stand_in_counts_the_cpu_spent_in_it_once_however_calls_nest(indexed_mongo, monkeypatch):
    import mongomock
    from mongomock.collection import Collection, Cursor

    spent = indexed_mongo._CpuInStandIn()
    monkeypatch.setattr(indexed_mongo, "cpu", spent)
    for name in indexed_mongo.TIMED_METHODS:  # timed again, by the counter this test reads
        monkeypatch.setattr(Collection, name, spent.timed(getattr(Collection, name).__wrapped__))
    monkeypatch.setattr(Cursor, "__next__", spent.timed(Cursor.__next__.__wrapped__))
    users = mongomock.MongoClient()["db"]["users"]
    users.create_index("email", unique=True)

    started = time.thread_time()
    for number in range(300):
        users.insert_one({"_id": number, "email": f"u{number}@example.com", "outbox": []})
        users.update_one({"_id": number}, {"$push": {"outbox": {"message_id": str(number)}}})
        users.find_one({"email": f"u{number}@example.com"})  # find_one iterates a cursor: counted once
    assert len(list(users.find({"outbox.message_id": "7"}))) == 1
    in_this_thread = time.thread_time() - started

    assert 0 < spent.seconds <= in_this_thread
    # The stand-in is nearly all this loop does: a count that missed calls, or counted nested ones twice, shows.
    assert spent.seconds > 0.5 * in_this_thread
