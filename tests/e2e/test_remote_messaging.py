"""Calls, casts, sends, monitors and links between real node processes.

Each test starts its own ``LocalCluster`` (node processes on loopback and
an in-process client node) and drives it over shoal's own distribution.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from e2e_support import Inbox, wait_for_item, wait_until

import shoal
from shoal.testing.cluster import LocalCluster

# These scenarios run against the embedded store and against etcd (conftest.py).
E2E_STORES = ("sqlite", "etcd")


pytestmark = pytest.mark.timeout(60)


async def test_remote_call_answers_with_the_serving_nodes_name() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        [echo] = await cluster.spawn("n1")
        assert await cluster.client.call(echo, {"k": [1, 2.5, "x", b"y"]}, 5.0) == [
            "n1", {"k": [1, 2.5, "x", b"y"]}]
        assert await cluster.client.call(echo, "pid", 5.0) == echo


async def test_remote_casts_are_served_in_order_before_a_later_call() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        [echo] = await cluster.spawn("n1")
        for i in range(50):
            cluster.client.cast(echo, i)
        # One connection, one mailbox: the call queues behind the 50 casts.
        assert await cluster.client.call(echo, "served", 5.0) == 51


async def test_sends_made_while_dialling_arrive_in_order_before_a_later_call() -> None:
    # The recorder is spawned by its node at start, so the client has no
    # connection to n1 yet: the sends wait for the dial, the call must not
    # overtake them.
    env = {"SHOAL_AGENT_WORKERS": "recorders:1:recorder"}
    async with LocalCluster(1, heartbeat_timeout=0.5, env=env, mesh=False) as cluster:
        client = cluster.client
        await wait_until(lambda: bool(client.groups.get_members("recorders")),
                         what="the recorder to be seen")
        [recorder] = client.groups.get_members("recorders")
        assert client._remote.manager is not None
        assert "n1" not in client._remote.manager.peers()
        for i in range(50):
            client.send(recorder, i)
        received = await client.call(recorder, "received", 5.0)
        assert received == [f"info {i}" for i in range(50)]


async def test_remote_send_reaches_handle_info() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        [recorder] = await cluster.spawn("n1", "recorder")
        cluster.client.send(recorder, {"hello": "n1"})
        cluster.client.send(recorder, [1, 2])
        received = await cluster.client.call(recorder, "received", 5.0)
        assert received == ["info {'hello': 'n1'}", "info [1, 2]"]


async def test_monitor_of_remote_pid_gets_down_with_crash_reason_killed_and_noproc() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        box: list[Any] = []
        watcher = await client.spawn(Inbox, box)
        crasher, victim = await cluster.spawn("n1", count=2)
        crash_ref = client.monitor(crasher, watcher=watcher)
        kill_ref = client.monitor(victim, watcher=watcher)

        with pytest.raises(shoal.CallError):
            await client.call(crasher, "crash", 5.0)
        down = await wait_for_item(box, lambda m: isinstance(m, shoal.Down)
                                   and m.ref == crash_ref, what="Down of the crashed pid")
        assert down.pid == crasher
        assert isinstance(down.reason, shoal.Crash)
        assert down.reason.type == "builtins.RuntimeError"
        assert down.reason.message == "crash requested"
        assert "handle_call" in down.reason.traceback
        assert down.reason.exception is None  # nothing is unpickled (G7)

        assert await cluster.control("n1", "kill", victim) == "ok"
        down = await wait_for_item(box, lambda m: isinstance(m, shoal.Down)
                                   and m.ref == kill_ref, what="Down of the killed pid")
        assert (down.pid, down.reason) == (victim, shoal.KILLED)

        # Monitoring a pid that is already dead: Down "noproc", from its node.
        late_ref = client.monitor(victim, watcher=watcher)
        down = await wait_for_item(box, lambda m: isinstance(m, shoal.Down)
                                   and m.ref == late_ref, what="Down of a dead pid")
        assert (down.pid, down.reason) == (victim, shoal.NOPROC)
        assert len([m for m in box if isinstance(m, shoal.Down)]) == 3


async def test_crash_on_one_node_stops_linked_process_on_another() -> None:
    async with LocalCluster(2, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        box: list[Any] = []
        watcher = await client.spawn(Inbox, box)
        [crasher] = await cluster.spawn("n1")
        [linked] = await cluster.spawn("n2")
        assert await cluster.control("n2", "link", linked, crasher) == "ok"
        # A call from n2 to the crasher travels behind the link (one sender
        # node, one receiver node: in order), so the link is in place once
        # it is answered; a crash before that would be a link to a dead pid.
        assert await cluster.control("n2", "call", crasher, "ping", 5.0) == [
            "ok", ["n1", "ping"]]
        client.monitor(linked, watcher=watcher)
        # A call to the same node travels behind the monitor: once answered,
        # the monitor is in place (else a crash first would give "noproc").
        assert await client.call(linked, "ping", 5.0) == ["n2", "ping"]

        with pytest.raises(shoal.CallError):
            await client.call(crasher, "crash", 5.0)
        down = await wait_for_item(box, lambda m: isinstance(m, shoal.Down),
                                   what="the linked process on n2 to stop")
        assert down.pid == linked
        # The exit signal carried the crash across the link, then Down across to us.
        assert isinstance(down.reason, shoal.Crash)
        assert down.reason.message == "crash requested"
        assert await cluster.control("n2", "alive", linked) is False
        with pytest.raises(shoal.NoSuchProcess):
            await client.call(linked, "ping", 5.0)


async def test_trapping_exits_turns_a_remote_crash_into_an_exit_message() -> None:
    async with LocalCluster(2, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        [crasher] = await cluster.spawn("n1")
        [recorder] = await cluster.spawn("n2", "recorder")
        assert await client.call(recorder, ["link", crasher], 5.0) == "ok"
        # Answered behind the link on the n2 -> n1 connection (see above).
        assert await cluster.control("n2", "call", crasher, "ping", 5.0) == [
            "ok", ["n1", "ping"]]

        with pytest.raises(shoal.CallError):
            await client.call(crasher, "crash", 5.0)

        seen = await _poll(lambda: client.call(recorder, "received", 5.0),
                           what="an Exit at the trapping process")
        assert len(seen) == 1
        assert seen[0].startswith(f"exit {crasher} crash builtins.RuntimeError: crash requested")
        assert await cluster.control("n2", "alive", recorder) is True


async def test_client_process_linked_to_remote_pid_stops_when_it_is_killed() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        box: list[Any] = []
        trapper = await client.spawn(Inbox, box, True)
        plain = await client.spawn(Inbox, [])
        watcher = await client.spawn(Inbox, box)
        [target] = await cluster.spawn("n1")
        client.link(trapper, target)
        client.link(plain, target)
        plain_ref = client.monitor(plain, watcher=watcher)
        await client.call(target, "ping", 5.0)  # the links arrived before this reply
        assert await cluster.control("n1", "kill", target) == "ok"
        exit_msg = await wait_for_item(box, lambda m: isinstance(m, shoal.Exit),
                                       what="Exit at the trapping process")
        assert (exit_msg.pid, exit_msg.reason) == (target, shoal.KILLED)
        down = await wait_for_item(box, lambda m: isinstance(m, shoal.Down)
                                   and m.ref == plain_ref, what="the linked process to stop")
        assert down.reason == shoal.KILLED
        assert client.is_alive(trapper)


async def test_call_to_a_remote_pid_that_exited_fails_at_once_with_no_such_process() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        [echo] = await cluster.spawn("n1")
        assert await cluster.control("n1", "kill", echo) == "ok"
        start = time.monotonic()
        with pytest.raises(shoal.NoSuchProcess) as caught:
            await cluster.client.call(echo, "ping", 5.0)
        assert time.monotonic() - start < 0.5  # its node answered, no timeout
        assert caught.value.pid == echo
        assert caught.value.not_started


async def test_remote_handler_crash_raises_call_error_with_remote_details() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        [echo] = await cluster.spawn("n1")
        with pytest.raises(shoal.CallError) as caught:
            await cluster.client.call(echo, "crash", 5.0)
        error = caught.value
        assert error.pid == echo
        assert error.remote_type == "builtins.RuntimeError"
        assert error.remote_message == "crash requested"
        assert "Traceback" in error.remote_traceback
        assert "handle_call" in error.remote_traceback
        assert "raise RuntimeError" in error.remote_traceback
        assert not error.not_started
        # Let it crash: the process is gone afterwards.
        with pytest.raises(shoal.NoSuchProcess):
            await cluster.client.call(echo, "ping", 5.0)


async def test_bad_request_crosses_nodes_and_the_callee_keeps_running() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        [recorder] = await cluster.spawn("n1", "recorder", group="recorders")
        with pytest.raises(shoal.BadRequest) as caught:
            await client.call(recorder, "no such command", 5.0)
        assert "no such command" in str(caught.value)
        assert await client.call(recorder, "received", 5.0) == []
        # Through a group call too: the request itself is wrong, so no retry.
        await wait_until(lambda: recorder in client.groups.get_members("recorders"),
                         what="the recorder to join")
        with pytest.raises(shoal.BadRequest):
            await client.groups.call("recorders", "nonsense", timeout=5.0)
        assert await client.call(recorder, "received", 5.0) == []


async def _poll(fetch: Any, *, what: str, timeout: float = 10.0) -> list[str]:
    """Fetch a remote list until it is non-empty (each fetch is a round trip)."""
    deadline = time.monotonic() + timeout
    while True:
        items = list(await fetch())
        if items:
            return items
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


@pytest.mark.e2e_stores("sqlite")
async def test_ask_alive_of_a_hung_node_times_out_instead_of_answering_false() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        [echo] = await cluster.spawn("n1")
        assert await client.ask_alive(echo, 5.0) is True
        cluster.sigstop("n1")
        try:
            started = time.monotonic()
            with pytest.raises(shoal.CallTimeout):
                await client.ask_alive(echo, 0.5)
            assert time.monotonic() - started < 3.0  # bounded by its deadline
        finally:
            cluster.sigcont("n1")
        assert await client.ask_alive(echo, 5.0) is True
