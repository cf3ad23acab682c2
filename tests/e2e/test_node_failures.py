"""A node killed (kill -9), hung (SIGSTOP) or restarted while the client
keeps calling its group: G2 (remote exclusion), G3 (group calls fail only
when they must) and G6 (bounded waiting), with real node processes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from e2e_support import (
    Attempt,
    Attempts,
    Inbox,
    Stream,
    group_on_every_node,
    wait_for_item,
    wait_until,
)

import shoal
from shoal.testing.cluster import LocalCluster

pytestmark = pytest.mark.timeout(90)

# How long after a kill -9 the client may still list the dead node's members:
# its connection breaks at once and the store ends the session the moment a
# probe finds the session's lock free (G2); generous for a loaded machine.
REMOVAL_BOUND = 2.0
# How long the echo workers take per request in the kill tests.
SERVICE_TIME = 0.02


async def test_kill9_under_steady_group_calls_loses_no_idempotent_call() -> None:
    async with LocalCluster(3, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        pids = await group_on_every_node(cluster)
        box: list[Any] = []
        watcher = await client.spawn(Inbox, box)
        refs = {client.monitor(pid, watcher=watcher): pid for pid in pids["n2"]}
        attempts = Attempts(client)
        # Each request takes 20 ms, so the kill below can be timed to break
        # calls that n2 holds: their attempts must fail and be retried.
        stream = Stream(client, "g", callers=8, idempotent=True,
                        request=["sleep", SERVICE_TIME]).start()
        await stream.wait_calls(300)
        assert stream.served_by("n2"), "the dead node must have served before the kill"

        await wait_until(lambda: attempts.unanswerable("n2", SERVICE_TIME) > 0,
                         what="a call n2 cannot have answered yet")
        killed_at = time.monotonic()
        cluster.kill9("n2")
        await wait_until(lambda: not client.cluster_view.is_routable("n2"), timeout=REMOVAL_BOUND,
                         what="n2 to be unroutable at the client")
        break_seen = time.monotonic()
        await wait_until(lambda: not any(p.node == "n2"
                                         for p in client.groups.get_members("g")),
                         timeout=REMOVAL_BOUND, what="n2's members to leave the client's view")
        removed_after = time.monotonic() - killed_at
        await stream.wait_calls(300)
        outcomes = await stream.stop()

        # Zero failures: live members existed throughout, and calls in flight
        # to n2 at the kill were retried elsewhere (idempotent).
        assert stream.failures() == []
        assert len(outcomes) >= 600
        # Once the client saw the connection break, no attempt went to n2.
        assert [a for a in attempts.to_node("n2") if not a.routable] == []
        assert [o for o in outcomes if o.node == "n2" and o.start > break_seen] == []
        # Attempts that failed at the kill: NodeDown, delivery unknown (sent,
        # then the connection broke) or not started (the connection was
        # already closing, the redial refused); both were retried.
        failed = [a for a in attempts.to_node("n2") if a.error is not None]
        assert failed and all(type(a.error) is shoal.NodeDown for a in failed)
        assert all(len(attempts.of_call(a.call_id)) >= 2 for a in failed if a.call_id)
        # The dead node's session ended: gone from the peers and the table.
        assert client.cluster_view.peer("n2") is None
        assert removed_after < REMOVAL_BOUND
        # Every monitor on its pids fired with "noconnection".
        for ref, pid in refs.items():
            down = await wait_for_item(box, lambda m, ref=ref: isinstance(m, shoal.Down)
                                       and m.ref == ref, what=f"Down of {pid}")
            assert (down.pid, down.reason) == (pid, shoal.NOCONNECTION)
        # The survivors keep serving.
        assert {o.node for o in outcomes[-100:]} == {"n1", "n3"}


async def test_kill9_fails_only_calls_in_flight_with_unknown_delivery_never_retried() -> None:
    async with LocalCluster(3, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        await group_on_every_node(cluster)
        attempts = Attempts(client)
        # Each request takes 50 ms: at any moment calls are in flight on n2.
        stream = Stream(client, "g", callers=8, idempotent=False,
                        request=["sleep", 0.05]).start()
        await stream.wait_calls(40)
        await wait_until(lambda: attempts.unanswerable("n2", 0.05) > 0,
                         what="a call n2 cannot have answered yet")
        cluster.kill9("n2")
        await wait_until(lambda: not client.cluster_view.is_routable("n2"), timeout=REMOVAL_BOUND,
                         what="n2 to be unroutable at the client")
        await stream.wait_calls(40)
        await stream.stop()

        failures = stream.failures()
        # Exactly the calls sent to n2 and unanswered when the connection broke.
        # A call that picked n2 as it went down and found no connection to
        # send on was refused a new one: provably not started, so its group
        # call moved on (G3) and succeeded elsewhere.
        to_n2 = attempts.to_node("n2")
        unanswered = [a for a in to_n2
                      if a.error is not None and not getattr(a.error, "not_started", False)]
        assert 1 <= len(failures) == len(unanswered)
        for attempt in to_n2:
            if getattr(attempt.error, "not_started", False):
                [outcome] = [o for o in stream.outcomes if o.call_id == attempt.call_id]
                assert outcome.error is None and outcome.node in ("n1", "n3")
        for outcome in failures:
            error = outcome.error
            assert type(error) is shoal.NodeDown
            assert error.node == "n2"
            assert not error.not_started  # sent, then the connection broke
            # Never silently retried: the failed call made exactly one attempt.
            [only] = attempts.of_call(outcome.call_id)
            assert only.pid.node == "n2"
        # Every other call succeeded, none on n2 after its break was seen.
        assert all(a.routable for a in attempts.to_node("n2"))


async def test_calls_that_provably_did_not_start_are_retried_on_live_members() -> None:
    # Workers are spawned by each node at start: the client never dialled
    # n2, so its calls to n2's members meet a hung (SIGSTOP), then dead
    # (kill -9) listener: the connection is refused, the request provably
    # did not start, and the group call moves to another member.
    env = {"SHOAL_AGENT_WORKERS": "g:2"}
    async with LocalCluster(3, heartbeat_timeout=0.5, env=env, mesh=False) as cluster:
        client = cluster.client
        await wait_until(lambda: len(client.groups.get_members("g")) == 6,
                         what="6 members of g at the client")
        assert client._remote.manager is not None
        assert "n2" not in client._remote.manager.peers()
        attempts = Attempts(client)
        cluster.sigstop("n2")
        # The store still lists n2 (its lock is held): selection picks it.
        stream = Stream(client, "g", callers=8, idempotent=False).start()
        await wait_until(lambda: attempts.in_flight("n2") >= 2,
                         what="calls waiting on n2's hung listener")
        cluster.kill9("n2")
        await cluster.wait_exit("n2")
        await wait_until(lambda: client.cluster_view.peer("n2") is None, timeout=REMOVAL_BOUND,
                         what="n2's session to end")
        await stream.wait_calls(100)
        await stream.stop()

        assert stream.failures() == []
        to_n2 = attempts.to_node("n2")
        assert len(to_n2) >= 2
        for attempt in to_n2:
            assert type(attempt.error) is shoal.NodeDown
            assert attempt.error.not_started
            # The same group call then succeeded on another node.
            [outcome] = [o for o in stream.outcomes if o.call_id == attempt.call_id]
            assert outcome.node in ("n1", "n3")
            # Bounded: a refused connection fails the attempt at once.
            assert attempt.end - attempt.start < 2.0


@pytest.mark.parametrize("heartbeat_timeout", [0.5, None], ids=["0.5s", "default-2s"])
async def test_sigstopped_node_is_unroutable_within_heartbeat_timeout_and_stays_member(
        heartbeat_timeout: float | None) -> None:
    options = {} if heartbeat_timeout is None else {"heartbeat_timeout": heartbeat_timeout}
    async with LocalCluster(3, **options) as cluster:  # type: ignore[arg-type]
        client = cluster.client
        bound = client.heartbeat_timeout  # 2.0 by default
        pids = await group_on_every_node(cluster)
        members_before = sorted(client.groups.get_members("g"))
        attempts = Attempts(client)
        # Calls sent to n2 before it was found silent wait for it (silence is
        # suspicion, not death): their deadline outlasts the stop, so they
        # complete once it continues.
        before = Stream(client, "g", callers=8, idempotent=False, timeout=15.0,
                        pause=0.002).start()  # paced: it lasts through a SIGSTOP
        await before.wait_calls(200)

        stopped_at = time.monotonic()
        cluster.sigstop("n2")
        members_seen: list[list[shoal.Pid]] = []

        def unroutable() -> bool:
            members_seen.append(sorted(client.groups.get_members("g")))
            return not client.cluster_view.is_routable("n2")

        # G2: unroutable within the heartbeat timeout of the last bytes
        # received (a margin for scheduling on a loaded machine).
        await wait_until(unroutable, timeout=bound + 2.0, what="n2 to become unroutable")
        detected = time.monotonic() - stopped_at
        assert detected <= bound + 0.3
        assert detected >= bound * 0.75  # silence, not something else, made it unroutable
        selection = {client.groups.select("g", strategy=s).node
                     for s in ("random", "round_robin", "least_loaded") for _ in range(20)}
        assert "n2" not in selection
        # New group calls succeed on the other members, none tried on n2.
        marked = len(attempts.items)
        during = Stream(client, "g", callers=8, idempotent=False).start()
        await during.wait_calls(200)
        await during.stop()
        assert during.failures() == []
        assert {o.node for o in during.outcomes} == {"n1", "n3"}
        assert all(a.pid.node != "n2" for a in attempts.items[marked:])

        cluster.sigcont("n2")
        stopped_for = time.monotonic() - stopped_at
        await wait_until(lambda: client.cluster_view.is_routable("n2"), timeout=bound + 1.0,
                         what="n2 to be routable again")
        await wait_until(lambda: any(o.node == "n2" for o in before.outcomes
                                     if o.start > stopped_at + stopped_for),
                         what="n2 to serve new group calls again")
        await before.stop()

        # Suspicion is not death: n2's members stayed members throughout.
        assert all(seen == members_before for seen in members_seen)
        assert sorted(client.groups.get_members("g")) == members_before
        assert all(client.groups.get_members("g").count(p) == 1 for p in pids["n2"])
        # The calls that waited on the stopped node completed after SIGCONT.
        assert before.failures() == [], stopped_for
        assert any(o.node == "n2" and o.start < stopped_at + detected
                   and o.end > stopped_at + stopped_for for o in before.outcomes)


async def test_an_idempotent_call_caught_on_a_hung_node_moves_on_once_it_is_silent() -> None:
    # remote.py Rule 4: an attempt of an idempotent group call that is in
    # flight on a node when it hangs fails NodeDown (delivery unknown) once
    # the node is silent for the heartbeat timeout, and the call succeeds on
    # a live member, long before its deadline; a non-idempotent one waits.
    async with LocalCluster(3, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        await group_on_every_node(cluster)
        attempts = Attempts(client)
        stream = Stream(client, "g", callers=8, idempotent=True, timeout=20.0,
                        request=["sleep", 0.05]).start()  # slow: some always on n2
        await stream.wait_calls(50)
        waiting: list[Any] = []
        n2_pid = next(p for p in client.groups.get_members("g") if p.node == "n2")

        def on_n2() -> list[Attempt]:  # group call attempts in flight on n2
            return [a for a in attempts.to_node("n2") if a.call_id is not None and not a.end]
        await wait_until(lambda: len(on_n2()) >= 2 and attempts.unanswerable("n2", 0.05) > 0,
                         what="group calls in flight on n2, one it cannot have answered yet")
        cluster.sigstop("n2")
        stopped_at = time.monotonic()
        plain = asyncio.create_task(client.call(n2_pid, "ping", 20.0))
        plain.add_done_callback(waiting.append)
        grouped = on_n2()
        await wait_until(lambda: all(a.end for a in grouped), timeout=3.0,
                         what="every group call attempt in flight on n2 to end, well before "
                              "its deadline")
        # Those not answered just before the stop were caught by it.
        caught = [a for a in grouped if a.end - stopped_at > 0.2]
        assert caught, "no call was caught in flight on n2 by the stop"
        ids = {a.call_id for a in caught}
        await wait_until(lambda: ids <= {o.call_id for o in stream.outcomes}, timeout=3.0,
                         what="the calls caught on n2 to end")
        for attempt in caught:
            assert type(attempt.error) is shoal.NodeDown and not attempt.error.not_started
            assert attempt.end - stopped_at < 3.0
            [outcome] = [o for o in stream.outcomes if o.call_id == attempt.call_id]
            assert outcome.node in ("n1", "n3")
        assert not waiting          # a plain call is not idempotent: it still waits
        cluster.sigcont("n2")
        assert await plain == ["n2", "ping"]
        await stream.stop()
        assert stream.failures() == []


async def test_node_restarted_under_same_name_is_a_new_incarnation() -> None:
    async with LocalCluster(2, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        old_pids = await cluster.spawn("n2", group="g", count=2)
        old_creation = await cluster.control("n2", "creation")
        await wait_until(lambda: len(client.groups.get_members("g")) == 2,
                         what="n2's members at the client")
        box: list[Any] = []
        watcher = await client.spawn(Inbox, box)

        cluster.kill9("n2")
        await cluster.wait_exit("n2")
        await cluster.start_node("n2")
        new_creation = await cluster.control("n2", "creation")
        assert new_creation > old_creation
        new_pids = await cluster.spawn("n2", group="g", count=2)
        await wait_until(lambda: sorted(client.groups.get_members("g")) == sorted(new_pids),
                         what="only the new incarnation's members")
        assert client.cluster_view.peer("n2").creation == new_creation

        # Old pids are dead by definition: calls fail at once, not by timeout.
        for pid in old_pids:
            start = time.monotonic()
            with pytest.raises(shoal.NoSuchProcess):
                await client.call(pid, "ping", 5.0)
            assert time.monotonic() - start < 0.1
        # Also as seen from the other node of the cluster.
        reply = await cluster.control("n1", "call", old_pids[0], "ping", 5.0)
        assert reply[:2] == ["error", "NoSuchProcess"]
        # A monitor on an old pid fires "noproc" at once; casts to it vanish.
        ref = client.monitor(old_pids[0], watcher=watcher)
        down = await wait_for_item(box, lambda m: isinstance(m, shoal.Down) and m.ref == ref,
                                   what="Down of an old pid")
        assert down.reason == shoal.NOPROC
        client.cast(old_pids[1], "lost")
        # The new incarnation serves.
        assert await client.call(new_pids[0], "served", 5.0) == 1
        assert await client.groups.call("g", "x", timeout=5.0) == ["n2", "x"]
