"""Calls, casts and sends on one node: what a caller sees in every case."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from runtime_servers import WAIT, Probe, Recorder, block, crash

import shoal

# -- replies ---------------------------------------------------------------------------


async def test_call_returns_the_handlers_value(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    assert await node.call(pid, {"x": [1, 2]}) == {"x": [1, 2]}
    assert await node.call(pid, lambda server, caller: caller.pid) is None


async def test_caller_pid_names_the_calling_process(node: shoal.Node) -> None:
    callee = await node.spawn(Probe)
    caller = await node.spawn(Probe)
    seen = await node.call(
        caller, lambda server, _: server.call(callee, lambda s, c: c.pid), timeout=WAIT)
    assert seen == caller


async def test_the_caller_of_a_local_call_has_every_attribute(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)

    def look(server: Probe, caller: shoal.Caller) -> Any:
        assert all(hasattr(caller, name) for name in shoal.Caller.__slots__)
        return caller.pid, caller.timeout, caller.gave_up, repr(caller)

    assert await node.call(pid, look, timeout=2.5) == (None, 2.5, False, "<Caller from None>")
    assert await node.call(pid, look, timeout=3) == (None, 3.0, False, "<Caller from None>")


async def test_an_answered_call_keeps_nothing_of_it_alive(node: shoal.Node) -> None:
    class Payload:
        pass

    pid = await node.spawn(Probe)
    reply = await node.call(pid, lambda server, caller: Payload())
    gone = weakref.ref(reply)
    del reply
    # One loop turn: the event loop's handle that resumed this task holds
    # the call's future until the turn ends (asyncio's, not shoal's).
    await asyncio.sleep(0)
    # Freed then, not when the deadlines next tick (deadlines.py Rule 5):
    # no cycle holds it, so no collection is needed.
    assert gone() is None


async def test_deferred_reply_from_handle_info(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)

    def keep(server: Probe, caller: shoal.Caller) -> Any:
        server.kept.append(caller)
        return shoal.NOREPLY

    def answer(server: Probe) -> None:
        server.kept.pop().reply("later")

    pending = asyncio.ensure_future(node.call(pid, keep))
    # The process is free while the caller waits: another call is served.
    assert await node.call(pid, "ping") == "ping"
    assert not pending.done()
    node.send(pid, answer)
    assert await asyncio.wait_for(pending, WAIT) == "later"


async def test_deferred_reply_from_a_cast_in_any_order(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)

    def keep(server: Probe, caller: shoal.Caller) -> Any:
        server.kept.append(caller)
        return shoal.NOREPLY

    def answer_all(server: Probe) -> None:
        for n, caller in enumerate(reversed(server.kept)):
            caller.reply(n)

    first = asyncio.ensure_future(node.call(pid, keep))
    second = asyncio.ensure_future(node.call(pid, keep))
    await node.call(pid, "sync")  # both calls have been handled and kept
    node.cast(pid, answer_all)
    assert await asyncio.wait_for(asyncio.gather(first, second), WAIT) == [1, 0]


async def test_replying_twice_keeps_the_first_reply(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)

    def twice(server: Probe, caller: shoal.Caller) -> Any:
        caller.reply("first")
        caller.reply("second")
        caller.fail(RuntimeError("too late"))
        return "third"

    assert await node.call(pid, twice) == "first"
    assert await node.call(pid, "still alive") == "still alive"


async def test_bad_request_is_raised_to_the_caller_and_the_process_lives(
    node: shoal.Node,
) -> None:
    pid = await node.spawn(Probe)

    def reject(server: Probe, caller: shoal.Caller) -> Any:
        raise shoal.BadRequest("nonsense", "I do not do that")

    with pytest.raises(shoal.BadRequest, match="I do not do that") as info:
        await node.call(pid, reject)
    assert info.value.request == "nonsense"
    assert node.is_alive(pid)
    assert await node.call(pid, "next") == "next"


async def test_default_handle_call_rejects_with_bad_request(node: shoal.Node) -> None:
    pid = await node.spawn(shoal.GenServer)
    with pytest.raises(shoal.BadRequest):
        await node.call(pid, "anything")
    assert node.is_alive(pid)


def raising_function_for_traceback(server: Probe, caller: shoal.Caller) -> Any:
    raise KeyError("missing-thing")


async def test_handler_raising_crashes_the_process_and_caller_gets_call_error(
    node: shoal.Node,
) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe)
    watcher = await node.spawn(Probe, rec)
    ref = node.monitor(pid, watcher=watcher)
    with pytest.raises(shoal.CallError) as info:
        await node.call(pid, raising_function_for_traceback)
    error = info.value
    assert error.pid == pid
    assert error.remote_type == "builtins.KeyError"
    assert error.remote_message == "'missing-thing'"
    assert "raising_function_for_traceback" in error.remote_traceback
    assert "KeyError" in error.remote_traceback
    assert "raising_function_for_traceback" in str(error)
    assert not node.is_alive(pid)
    _, _, down = await rec.wait_for("info", watcher)
    assert down.ref == ref and down.pid == pid
    assert isinstance(down.reason, shoal.Crash)
    assert down.reason.type == "builtins.KeyError"
    assert isinstance(down.reason.exception, KeyError)


async def test_callers_queued_behind_a_crash_get_no_such_process(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    release = asyncio.Event()
    started = asyncio.Event()

    async def crash_later(server: Probe, caller: shoal.Caller) -> Any:
        started.set()
        await release.wait()
        raise ValueError("down")

    crashing = asyncio.ensure_future(node.call(pid, crash_later))
    await started.wait()
    queued = asyncio.ensure_future(node.call(pid, "queued"))
    await asyncio.sleep(0)  # let the queued call reach the mailbox
    release.set()
    with pytest.raises(shoal.CallError):
        await crashing
    with pytest.raises(shoal.NoSuchProcess) as info:
        await queued
    assert info.value.pid == pid


async def test_call_to_a_dead_pid_raises_no_such_process_at_once(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    node.kill(pid)
    await node.wait_exit(pid)
    for target in (pid, shoal.Pid(node.name, node.creation, 999_999)):
        with pytest.raises(shoal.NoSuchProcess) as info:
            # A timeout far longer than the test: the error must not wait for it.
            await asyncio.wait_for(node.call(target, "x", timeout=60), 0.5)
        assert info.value.pid == target
        assert info.value.not_started


async def test_call_to_an_exiting_process_raises_no_such_process(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    node.exit(pid, "going")  # exit begins now; the task finishes later
    with pytest.raises(shoal.NoSuchProcess):
        await node.call(pid, "x")


async def test_call_timing_out_raises_call_timeout_and_the_late_reply_is_discarded(
    node: shoal.Node,
) -> None:
    pid = await node.spawn(Probe)
    release = asyncio.Event()
    with pytest.raises(shoal.CallTimeout) as info:
        await node.call(pid, block(release, result="late"), timeout=0.01)
    assert info.value.target == pid
    assert info.value.timeout == 0.01
    release.set()
    # The late reply went nowhere: the next call gets its own answer.
    assert await node.call(pid, "fresh") == "fresh"
    assert node.is_alive(pid)


async def test_caller_cancelled_while_waiting_leaves_the_process_healthy(
    node: shoal.Node,
) -> None:
    pid = await node.spawn(Probe)
    release, started = asyncio.Event(), asyncio.Event()
    pending = asyncio.ensure_future(node.call(pid, block(release, started)))
    await started.wait()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    release.set()
    assert await node.call(pid, "ok") == "ok"


async def test_no_leak_after_10000_timed_out_calls(node: shoal.Node) -> None:
    baseline_tasks = len(asyncio.all_tasks())
    gc.collect()
    baseline_callers = sum(isinstance(o, shoal.Caller) for o in gc.get_objects())
    pid = await node.spawn(Probe)
    release, started = asyncio.Event(), asyncio.Event()
    blocker = asyncio.ensure_future(node.call(pid, block(release, started), timeout=WAIT))
    await started.wait()

    ran = 0

    def counted(server: Probe, caller: shoal.Caller) -> Any:
        nonlocal ran
        ran += 1
        return "ran"

    async def one() -> None:
        with pytest.raises(shoal.CallTimeout):
            await node.call(pid, counted, timeout=0.001)

    async with asyncio.timeout(20):
        await asyncio.gather(*(one() for _ in range(10_000)))
    release.set()
    assert await blocker == "released"
    # Calls are served in order: once this one is answered, every timed-out
    # request queued before it has been taken out of the mailbox.
    assert await node.call(pid, "idle?") == "idle?"
    assert ran == 0, "callers that gave up before their request started must not run"
    probe = node.local_process(pid)
    assert probe is not None and len(probe.mailbox) == 0
    assert node.statistics().calls_in_flight == 0
    assert len(asyncio.all_tasks()) <= baseline_tasks + 1  # + the process's own task
    gc.collect()
    callers = sum(isinstance(o, shoal.Caller) for o in gc.get_objects())
    assert callers <= baseline_callers


async def test_an_idle_process_does_not_keep_its_last_message_alive(
    node: shoal.Node,
) -> None:
    handled = asyncio.Event()

    class Quiet(shoal.GenServer):
        async def handle_cast(self, request: Any) -> None:
            handled.set()

    class Payload:
        pass

    pid = await node.spawn(Quiet)
    request = Payload()
    gone = weakref.ref(request)
    node.cast(pid, request)
    await handled.wait()  # by now the process is back waiting for mail
    del request
    gc.collect()
    assert gone() is None


# -- one message at a time ---------------------------------------------------------------


async def test_a_handler_awaiting_does_not_let_another_message_interleave(
    node: shoal.Node,
) -> None:
    pid = await node.spawn(Probe)
    trace: list[str] = []

    def slow(n: int) -> Any:
        async def handler(server: Probe, *_: Any) -> int:
            trace.append(f"start {n}")
            if n == 0:  # messages arriving mid-handler wait their turn
                node.cast(server.pid, lambda server: trace.append("cast"))
                node.send(server.pid, lambda server: trace.append("info"))
            for _ in range(3):
                await asyncio.sleep(0)  # yield to the loop mid-handler on purpose
            trace.append(f"end {n}")
            return n

        return handler

    calls = [asyncio.ensure_future(node.call(pid, slow(n))) for n in range(3)]
    assert await asyncio.gather(*calls) == [0, 1, 2]
    await node.call(pid, "sync")
    assert trace == ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2",
                     "cast", "info"]


# -- casts and sends ---------------------------------------------------------------------


async def test_cast_reaches_handle_cast_and_send_reaches_handle_info(
    node: shoal.Node,
) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec)
    node.cast(pid, "c1")
    node.send(pid, "i1")
    node.cast(pid, "c2")
    await node.call(pid, "sync")
    assert rec.items == [("cast", pid, "c1"), ("info", pid, "i1"), ("cast", pid, "c2")]


async def test_genserver_helpers_cast_and_send_between_processes(node: shoal.Node) -> None:
    rec = Recorder()
    a = await node.spawn(Probe, rec)
    b = await node.spawn(Probe, rec)
    await node.call(a, lambda server, _: (server.cast(b, "hi"), server.send(b, "yo")))
    await rec.wait(lambda item: item == ("info", b, "yo"))
    assert rec.items == [("cast", b, "hi"), ("info", b, "yo")]


async def test_casts_and_sends_to_dead_pids_are_dropped_silently(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    node.kill(pid)
    await node.wait_exit(pid)
    node.cast(pid, "lost")
    node.send(pid, "lost")
    other = shoal.Pid("other-node", 5, 5)
    node.cast(other, "lost")
    node.send(other, "lost")


async def test_crash_in_handle_cast_stops_the_process_with_the_crash(
    node: shoal.Node,
) -> None:
    pid = await node.spawn(Probe)
    node.cast(pid, crash("cast went wrong"))
    reason = await node.wait_exit(pid)
    assert isinstance(reason, shoal.Crash)
    assert reason.type == "builtins.ValueError"
    assert reason.message == "cast went wrong"


async def test_a_crash_report_carries_its_pid_and_reason_for_log_filters(
    node: shoal.Node, caplog: pytest.LogCaptureFixture,
) -> None:
    pid = await node.spawn(Probe)
    node.cast(pid, crash("cast went wrong"))
    reason = await node.wait_exit(pid)
    [record] = [r for r in caplog.records if hasattr(r, "shoal_crash")]
    assert record.levelname == "ERROR" and record.name == "shoal"
    assert (record.shoal_crash.pid, record.shoal_crash.reason) == (pid, reason)
    assert "Traceback" in record.getMessage()  # the report itself is whole


async def test_init_raising_makes_spawn_raise_call_error(node: shoal.Node) -> None:
    class BadInit(shoal.GenServer):
        async def init(self) -> None:
            raise RuntimeError("no config")

    with pytest.raises(shoal.CallError) as info:
        await node.spawn(BadInit)
    assert info.value.remote_type == "builtins.RuntimeError"
    assert node.processes() == []


async def test_spawn_passes_arguments_to_init(node: shoal.Node) -> None:
    class Counter(shoal.GenServer):
        async def init(self, start: int = 0, *, step: int = 1) -> None:
            self.n, self.step = start, step

        async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
            self.n += self.step
            return self.n

    pid = await node.spawn(Counter, 5, step=2)
    assert await node.call(pid, "incr") == 7
    pid2 = await node.spawn_opt(Counter, args=(1,), kwargs={"step": 10})
    assert await node.call(pid2, "incr") == 11
