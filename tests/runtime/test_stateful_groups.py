"""Random interleavings of spawn, join, leave, link, crash, kill, exit
signals, stops, selection and group calls, on a real node.

After every step: selection never returns a dead pid (any strategy),
get_members lists only live pids and exactly the joins of live pids that
were not left, and a group call fails with NoMembers only when the group
has no live member. Each machine owns an event loop (``asyncio.Runner``)
and runs every step to completion on it; exits that a step sets in motion
(over links) may still be unfolding during the next steps.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import shoal

GROUPS = ["a", "b"]
STRATEGIES: list[tuple[str, Any]] = [
    ("local_first", None), ("random", None), ("round_robin", None),
    ("least_loaded", None), ("hash", "k1"), ("hash", 7),
]
MAX_LIVE = 8
STEP_TIMEOUT = 5.0


class Worker(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "crash":
            raise RuntimeError("crashed on purpose")
        if request == "stop":
            raise shoal.Stop("done", reply="stopping")
        return self.pid


class GroupMachine(RuleBasedStateMachine):
    pids = Bundle("pids")

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.node = shoal.Node("s", store="memory://", seed=0, drain_timeout=1.0)
        # Joins made and not left, per (group, pid); dead pids are filtered
        # out when compared, since an exit removes every join of the pid.
        self.joins: Counter[tuple[str, shoal.Pid]] = Counter()
        self.spawned: list[shoal.Pid] = []

    def run(self, awaitable: Any, *, check: bool = False) -> Any:
        async def bounded() -> Any:
            try:
                async with asyncio.timeout(STEP_TIMEOUT):
                    return await awaitable
            finally:
                # Exits: checked at the very instant the step ends, before any other
                # task runs (the @invariant checks run later, once the loop
                # has stopped and exits in motion may have progressed).
                if check and self.node.running:
                    self.members_are_exactly_the_live_joins()
                    self.selection_never_returns_a_dead_pid()
        return self.runner.run(bounded())

    def now(self, fn: Any, *args: Any, check: bool = False) -> Any:
        """Run a synchronous API call inside the loop, as user code would."""
        async def call() -> Any:
            return fn(*args)
        return self.run(call(), check=check)

    def teardown(self) -> None:
        try:
            self.run(self.node.stop())
        finally:
            self.runner.close()

    def live(self) -> list[shoal.Pid]:
        return [p for p in self.spawned if self.node.is_alive(p)]

    def expected_members(self, group: str) -> Counter[shoal.Pid]:
        return Counter({pid: n for (g, pid), n in self.joins.items()
                        if g == group and n > 0 and self.node.is_alive(pid)})

    @initialize()
    def start(self) -> None:
        self.run(self.node.start())

    # -- processes ----------------------------------------------------------------

    @precondition(lambda self: len(self.live()) < MAX_LIVE)
    @rule(target=pids)
    def spawn(self) -> shoal.Pid:
        pid = self.run(self.node.spawn(Worker))
        self.spawned.append(pid)
        return pid

    @rule(a=pids, b=pids)
    def link(self, a: shoal.Pid, b: shoal.Pid) -> None:
        # Linking to a dead pid sends the live side a "noproc" exit signal.
        self.now(self.node.link, a, b, check=True)

    @rule(pid=pids)
    def crash(self, pid: shoal.Pid) -> None:
        alive = self.node.is_alive(pid)
        try:
            self.run(self.node.call(pid, "crash"), check=True)
        except shoal.CallError:
            assert alive
        except shoal.NoSuchProcess:
            pass
        else:
            raise AssertionError("a crashing call returned")
        assert not self.node.is_alive(pid)

    @rule(pid=pids)
    def stop(self, pid: shoal.Pid) -> None:
        try:
            assert self.run(self.node.call(pid, "stop"), check=True) == "stopping"
        except shoal.NoSuchProcess:
            return
        assert self.run(self.node.wait_exit(pid)) in ("done", shoal.NOPROC)

    @rule(pid=pids)
    def kill(self, pid: shoal.Pid) -> None:
        self.now(self.node.kill, pid, check=True)
        assert not self.node.is_alive(pid)

    @rule(pid=pids, reason=st.sampled_from(["shutdown", "evicted", "normal"]))
    def exit_signal(self, pid: shoal.Pid, reason: str) -> None:
        alive = self.node.is_alive(pid)
        self.now(self.node.exit, pid, reason, check=True)
        # "normal" is ignored by a process that does not trap exits.
        assert self.node.is_alive(pid) == (alive and reason == "normal")

    # -- membership ---------------------------------------------------------------

    @rule(pid=pids, group=st.sampled_from(GROUPS), times=st.integers(1, 2))
    def join(self, pid: shoal.Pid, group: str, times: int) -> None:
        alive = self.node.is_alive(pid)
        try:
            self.run(self.node.groups.join(group, [pid] * times))
        except shoal.NoSuchProcess:
            assert not alive
            return
        assert alive
        self.joins[(group, pid)] += times

    @rule(pid=pids, group=st.sampled_from(GROUPS))
    def leave(self, pid: shoal.Pid, group: str) -> None:
        joined = self.node.is_alive(pid) and self.joins[(group, pid)] > 0
        assert self.run(self.node.groups.leave(group, pid)) is joined
        if joined:
            self.joins[(group, pid)] -= 1

    # -- selection and calls ----------------------------------------------------------

    @rule(group=st.sampled_from(GROUPS), strategy=st.sampled_from(STRATEGIES))
    def select(self, group: str, strategy: tuple[str, Any]) -> None:
        name, key = strategy
        try:
            pid = self.now(lambda: self.node.groups.select(group, strategy=name, key=key))
        except shoal.NoMembers:
            assert not self.expected_members(group)
            return
        assert self.node.is_alive(pid)
        assert pid in self.expected_members(group)

    @rule(group=st.sampled_from(GROUPS), strategy=st.sampled_from(STRATEGIES))
    def group_call(self, group: str, strategy: tuple[str, Any]) -> None:
        name, key = strategy
        try:
            # idempotent: a member that a link kills while it holds the
            # request may be retried elsewhere; the request is harmless.
            pid = self.run(self.node.groups.call(group, "who", strategy=name, key=key,
                                                 idempotent=True, timeout=STEP_TIMEOUT))
        except shoal.NoMembers:
            assert not self.expected_members(group), "NoMembers with live members"
            return
        assert isinstance(pid, shoal.Pid)

    # -- after every step ---------------------------------------------------------------

    @invariant()
    def members_are_exactly_the_live_joins(self) -> None:
        for group in GROUPS:
            members = self.node.groups.get_members(group)
            assert all(self.node.is_alive(p) for p in members), members
            assert Counter(members) == self.expected_members(group)
            assert Counter(self.node.groups.get_local_members(group)) == Counter(members)
        assert sorted(self.node.groups.which_groups()) == sorted(
            g for g in GROUPS if self.expected_members(g))

    @invariant()
    def selection_never_returns_a_dead_pid(self) -> None:
        for group in GROUPS:
            for name, key in STRATEGIES:
                try:
                    pid = self.node.groups.select(group, strategy=name, key=key)
                except shoal.NoMembers:
                    assert not self.node.groups.get_members(group)
                    continue
                assert self.node.is_alive(pid), (name, pid)


GroupMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=30, deadline=None,
)
TestGroupMachine = GroupMachine.TestCase
