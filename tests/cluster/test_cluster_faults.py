"""Losing one node of each kind mid-burst loses nothing.

Each row drives 300 registrations through the balancer from 8 clients, kills one node while
they are in flight (SIGKILL: no goodbye to anyone), lets the system settle, then confirms every
address with the last code mailed to it and logs in. A row asserts, for every registration:
answered 201 in the end (a client asks again after a refused connection or a 503), confirmed and
able to log in (0 lost), no resend needed, nothing dead-lettered, no 5xx but 503s that carry
Retry-After. The killed node is started again at the end of its row, so the next row has the
whole cluster.
"""

from __future__ import annotations

import contextlib

import pytest

from devtools.cluster import Cut, PartitionUnavailable, partitioned
from tests.cluster.harness import REGISTRATIONS, ClusterRun, ClusterStack

# The cluster starts with the first row; each row is a burst, a settle and 600 judging calls.
pytestmark = pytest.mark.timeout(900)

# Kill once this many mails of the row went out: the burst is then well in flight.
KILL_AFTER_MAILS = 40


def _burst_with(cluster: ClusterStack, kill) -> tuple[ClusterRun, list[str], int]:
    run = ClusterRun(cluster)
    mailed_before = run.mailed_so_far()
    thread, result = run.in_background(REGISTRATIONS)
    run.wait_mailed(mailed_before + KILL_AFTER_MAILS)
    mailed_at_kill = run.mailed_so_far() - mailed_before
    kill()
    thread.join()
    [created] = result
    run.settle(created, timeout=240)
    return run, created, mailed_at_kill


def _assert_nothing_lost(run: ClusterRun, figures: dict, one_code_each: bool = True) -> None:
    assert figures["201"] == figures["driven"] == REGISTRATIONS, f"refused: {dict(run.refused)}"
    assert figures["lost"] == 0, run.log_tails()
    assert figures["confirmed"] == REGISTRATIONS
    assert figures["resent"] == 0
    assert figures["dead_lettered"] == 0
    assert figures["other_5xx"] == 0
    assert run.cluster.answers.unbounded_503 == 0
    assert figures["mailed at kill"] < REGISTRATIONS, "the node was not killed mid-burst"
    if one_code_each:
        # A repeated mail may only repeat the code: a worker killed between SMTP and its record.
        # (The welcome that follows the confirmation carries no code.)
        codes = {
            address: {mail.code for mail in run.stack.sink.mails_to(address) if mail.code is not None}
            for address in run.registered
        }
        assert {address: found for address, found in codes.items() if len(found) != 1} == {}


def test_a_worker_killed_mid_burst(cluster, record_figures):
    try:
        run, created, mailed_at_kill = _burst_with(cluster, cluster.workers[0].kill)
        figures = {**run.figures("(d) worker SIGKILL", REGISTRATIONS, created), "mailed at kill": mailed_at_kill}
        record_figures(figures)
        _assert_nothing_lost(run, figures)
    finally:
        cluster.start_worker(0)


def test_an_auth_replica_killed_mid_burst(cluster, record_figures):
    try:
        run, created, mailed_at_kill = _burst_with(cluster, cluster.auths[0].kill)
        figures = {**run.figures("(c) auth replica SIGKILL", REGISTRATIONS, created), "mailed at kill": mailed_at_kill}
        record_figures(figures)
        # A registration cut off with its replica is asked again, and a pending address
        # registered again gets a new code: its last mail holds the one that works.
        _assert_nothing_lost(run, figures, one_code_each=False)
    finally:
        cluster.start_auth(0)


def test_the_redis_primary_killed_mid_burst_sentinel_promotes_the_replica(cluster, record_figures):
    assert cluster.redis is not None
    primary = cluster.redis.master()
    try:
        run, created, mailed_at_kill = _burst_with(cluster, primary.kill)
        figures = {**run.figures("(b) Redis primary SIGKILL", REGISTRATIONS, created), "mailed at kill": mailed_at_kill}
        figures["promoted"] = cluster.redis.master_port() != primary.port
        record_figures(figures)
        assert figures["promoted"]
        _assert_nothing_lost(run, figures)
    finally:
        primary.start()  # Sentinel makes it a replica of the promoted one


def test_the_rabbitmq_node_leading_the_work_queue_killed_mid_burst(cluster, record_figures):
    assert cluster.rabbit is not None
    leader = cluster.rabbit.leader_of(cluster.names["ACCOUNT_CREATION_QUEUE"])
    try:
        run, created, mailed_at_kill = _burst_with(cluster, leader.kill)
        figures = {
            **run.figures("(a) RabbitMQ leader SIGKILL", REGISTRATIONS, created),
            "mailed at kill": mailed_at_kill,
        }
        figures["new leader"] = cluster.rabbit.leader_of(cluster.names["ACCOUNT_CREATION_QUEUE"]).name != leader.name
        record_figures(figures)
        assert figures["new leader"]
        _assert_nothing_lost(run, figures)
    finally:
        leader.restart()


def test_the_rabbitmq_node_leading_the_work_queue_cut_off_by_a_partition_mid_burst(cluster, record_figures):
    assert cluster.rabbit is not None
    queue = cluster.names["ACCOUNT_CREATION_QUEUE"]
    leader = cluster.rabbit.leader_of(queue)
    others = [node for node in cluster.rabbit.nodes if node is not leader]
    cut = contextlib.ExitStack()
    cuts: list[Cut] = []
    try:
        # Cut for the burst and until everything was mailed; the codes are judged once it healed.
        with cut:
            run, created, cut_at = _burst_with(cluster, lambda: cuts.append(cut.enter_context(partitioned(leader))))
            dropped = cuts[0].dropped_packets()
            new_leader = cluster.rabbit.leader_of(queue, among=others).name != leader.name
        figures = run.figures("(e) RabbitMQ leader partitioned", REGISTRATIONS, created)
        figures.update({"mailed at kill": cut_at, "packets dropped by the cut": dropped, "new leader": new_leader})
        record_figures(figures)
        assert new_leader
        assert dropped > 0
        _assert_nothing_lost(run, figures)
    except PartitionUnavailable as error:
        pytest.skip(f"this machine cannot cut the cluster's network: {error}")
    finally:
        cut.close()  # healed; pause_minority lets the node resume and rejoin
        try:
            leader.await_startup()
        except RuntimeError:
            # On a starved machine the paused node was seen still booting three minutes after the heal,
            # once the burst's figures were in: the later tests get it back as a killed node comes back.
            leader.kill()
            leader.restart()
