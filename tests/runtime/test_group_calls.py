"""Group calls (G3): retried elsewhere only when the request provably did
not start (or the caller said it is idempotent), under one deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_servers import WAIT, Probe, block

import shoal


def _key_for(node: shoal.Node, group: str, pid: shoal.Pid) -> int:
    """A hash key that routes to ``pid`` (hash selection is deterministic)."""
    for key in range(1000):
        if node.groups.select(group, strategy="hash", key=key) == pid:
            return key
    raise AssertionError("no key routes there")


def whoami(server: Probe, caller: shoal.Caller) -> shoal.Pid:
    return server.pid


async def _two(node: shoal.Node) -> tuple[shoal.Pid, shoal.Pid, int]:
    """Members first and second of group "g", and a key routing to first."""
    first, second = await node.spawn(Probe), await node.spawn(Probe)
    await node.groups.join("g", [first, second])
    return first, second, _key_for(node, "g", first)


async def _queue_behind_a_blocker(node: shoal.Node, pid: shoal.Pid,
                                  ) -> tuple[asyncio.Event, asyncio.Future[Any]]:
    release, started = asyncio.Event(), asyncio.Event()
    busy = asyncio.ensure_future(node.call(pid, block(release, started), timeout=WAIT))
    await started.wait()
    return release, busy


async def test_group_call_returns_a_members_reply(node: shoal.Node) -> None:
    first, second, _ = await _two(node)
    for strategy in ("local_first", "random", "round_robin", "least_loaded"):
        assert await node.groups.call("g", whoami, strategy=strategy) in (first, second)
    assert await node.groups.call("g", whoami, strategy="hash", key=1) == \
        await node.groups.call("g", whoami, strategy="hash", key=1)


async def test_round_robin_group_calls_reach_every_member(node: shoal.Node) -> None:
    first, second, _ = await _two(node)
    replies = [await node.groups.call("g", whoami, strategy="round_robin") for _ in range(4)]
    assert sorted(replies) == sorted([first, second] * 2)
    assert node.statistics().calls_in_flight == 0


async def test_group_call_on_an_empty_group_raises_no_members(node: shoal.Node) -> None:
    with pytest.raises(shoal.NoMembers) as info:
        await node.groups.call("empty", "x")
    assert info.value.tried == 0


async def test_no_such_process_is_retried_on_another_member(node: shoal.Node) -> None:
    first, second, key = await _two(node)
    _, busy = await _queue_behind_a_blocker(node, first)
    call = asyncio.ensure_future(
        node.groups.call("g", whoami, strategy="hash", key=key, timeout=WAIT))
    await asyncio.sleep(0)  # one turn: the request waits in first's mailbox
    node.kill(first)  # queued requests never started: NoSuchProcess
    assert await call == second
    with pytest.raises(shoal.ProcessExited):
        await busy


async def test_overloaded_is_retried_on_another_member(node: shoal.Node) -> None:
    first = await node.spawn_opt(Probe, mailbox_size=1)
    second = await node.spawn(Probe)
    await node.groups.join("g", [first, second])
    key = _key_for(node, "g", first)
    release, busy = await _queue_behind_a_blocker(node, first)
    node.cast(first, "fills the mailbox")
    assert await node.groups.call("g", whoami, strategy="hash", key=key) == second
    release.set()
    await busy


async def test_a_call_error_is_never_retried(node: shoal.Node) -> None:
    first, second, key = await _two(node)

    def fail(server: Probe, caller: shoal.Caller) -> Any:
        raise RuntimeError(f"failed on {server.pid}")

    with pytest.raises(shoal.CallError) as info:
        await node.groups.call("g", fail, strategy="hash", key=key)
    assert info.value.pid == first
    handled = await node.call(second, lambda server, _: server.handled)
    assert handled == 1  # only this probe of its counter


async def test_a_bad_request_is_never_retried(node: shoal.Node) -> None:
    first, second, key = await _two(node)

    def reject(server: Probe, caller: shoal.Caller) -> Any:
        raise shoal.BadRequest(None, f"rejected by {server.pid}")

    with pytest.raises(shoal.BadRequest, match=str(first).replace(".", r"\.")):
        await node.groups.call("g", reject, strategy="hash", key=key, idempotent=True)
    assert await node.call(second, lambda server, _: server.handled) == 1
    assert node.is_alive(first)


async def _killed_mid_call(node: shoal.Node, *, idempotent: bool) -> Any:
    first, second, key = await _two(node)
    started = asyncio.Event()

    async def slow(server: Probe, caller: shoal.Caller) -> Any:
        if server.pid == first:
            started.set()
            await asyncio.Event().wait()
        return server.pid

    call = asyncio.ensure_future(node.groups.call(
        "g", slow, strategy="hash", key=key, idempotent=idempotent, timeout=WAIT))
    await started.wait()  # the request is running on first: delivery happened
    node.kill(first)
    return await call, first, second


async def test_process_exited_mid_call_is_raised_when_not_idempotent(
    node: shoal.Node,
) -> None:
    with pytest.raises(shoal.ProcessExited) as info:
        await _killed_mid_call(node, idempotent=False)
    assert info.value.reason == shoal.KILLED


async def test_process_exited_mid_call_is_retried_when_idempotent(node: shoal.Node) -> None:
    reply, _, second = await _killed_mid_call(node, idempotent=True)
    assert reply == second


async def test_every_member_failing_ends_in_no_members_with_the_count(
    node: shoal.Node,
) -> None:
    members = [await node.spawn_opt(Probe, mailbox_size=1) for _ in range(3)]
    await node.groups.join("g", members)
    blocked = [await _queue_behind_a_blocker(node, pid) for pid in members]
    for pid in members:
        node.cast(pid, "fill")
    with pytest.raises(shoal.NoMembers) as info:
        await node.groups.call("g", "x", strategy="round_robin")
    assert info.value.tried == 3
    for release, busy in blocked:
        release.set()
        await busy


async def test_one_deadline_covers_every_attempt(node: shoal.Node) -> None:
    first, _, key = await _two(node)
    _, busy = await _queue_behind_a_blocker(node, first)

    done = asyncio.Event()

    async def hang_on_second(server: Probe, caller: shoal.Caller) -> Any:
        await done.wait()

    loop = asyncio.get_running_loop()
    began = loop.time()
    # Fault injection on a timer (not synchronisation): the first member
    # dies half-way through the deadline, the retry then hangs on the second.
    loop.call_later(0.2, node.kill, first)
    with pytest.raises(shoal.CallTimeout):
        await node.groups.call("g", hang_on_second, strategy="hash", key=key, timeout=0.4)
    elapsed = loop.time() - began
    assert 0.39 <= elapsed < 0.55, elapsed  # not 0.2 + a fresh 0.4
    done.set()
    with pytest.raises(shoal.ProcessExited):
        await busy


async def test_group_cast_goes_to_one_member(node: shoal.Node) -> None:
    first, _, key = await _two(node)
    assert node.groups.cast("g", "hello", strategy="hash", key=key) == first
    with pytest.raises(shoal.NoMembers):
        node.groups.cast("nobody", "hello")


async def test_least_loaded_selection_avoids_a_member_with_a_long_queue(
    node: shoal.Node,
) -> None:
    busy_pid = await node.spawn(Probe)
    idle = [await node.spawn(Probe) for _ in range(3)]
    await node.groups.join("g", [busy_pid, *idle])
    release, busy = await _queue_behind_a_blocker(node, busy_pid)
    for n in range(20):
        node.cast(busy_pid, n)  # a long queue
    picks = [node.groups.select("g", strategy="least_loaded") for _ in range(400)]
    # Power of two choices: it wins only when sampled against itself
    # (1 pick in 16), never against a lighter member.
    assert 0 < picks.count(busy_pid) < 60
    assert set(picks) == {busy_pid, *idle}
    release.set()
    await busy


async def test_observe_sees_every_attempt_with_its_member_and_error(node: shoal.Node) -> None:
    first, second, key = await _two(node)
    _, busy = await _queue_behind_a_blocker(node, first)
    seen: list[tuple[shoal.Pid, float, float, type | None]] = []
    call = asyncio.ensure_future(node.groups.call(
        "g", whoami, strategy="hash", key=key, timeout=WAIT,
        observe=lambda pid, start, end, exc: seen.append(
            (pid, start, end, None if exc is None else type(exc)))))
    await asyncio.sleep(0)  # one turn: the request waits in first's mailbox
    node.kill(first)
    assert await call == second
    assert [(pid, error) for pid, _, _, error in seen] == [
        (first, shoal.NoSuchProcess), (second, None)]
    assert all(start <= end for _, start, end, _ in seen)
    assert seen[0][2] <= seen[1][1]  # the retry began after the first attempt ended
    with pytest.raises(shoal.ProcessExited):
        await busy
