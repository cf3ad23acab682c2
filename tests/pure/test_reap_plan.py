"""The reap planner never plans the removal of a live member.

A random cluster is built from the truth (which incarnation of each node
name runs, which of its processes are alive), then seen through a
consistent store snapshot and an observer cut off from any subset of the
nodes; the planner must remove only what is dead and respect its guards.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.membership.reap import (
    MemberEntry,
    OwnerView,
    PidState,
    plan_reap,
)
from shoal.pid import Pid

GROUPS = ["a", "b", "c"]


@dataclass
class Truth:
    running: dict[str, int | None]  # node name -> the incarnation running, or None
    alive: set[Pid]
    entries: list[MemberEntry]


@st.composite
def clusters(draw: st.DrawFn) -> Truth:
    names = [f"n{i}" for i in range(draw(st.integers(1, 5)))]
    running: dict[str, int | None] = {}
    alive: set[Pid] = set()
    entries: list[MemberEntry] = []
    for name in names:
        current = draw(st.sampled_from([None, 10, 20]))
        running[name] = current
        # Earlier incarnations' entries may linger (orphans); a live
        # incarnation's entries are its members, some of them already dead
        # (exited, their leave not yet written: the owner says noproc).
        for creation in (5, 10, 20):
            if current is not None and creation > current:
                continue
            for serial in range(1, draw(st.integers(0, 4)) + 1):
                pid = Pid(name, creation, serial)
                if creation == current and draw(st.booleans()):
                    alive.add(pid)
                elif creation != current and not draw(st.booleans()):
                    continue  # no orphan for this one
                elif creation == current and draw(st.integers(0, 3)) != 0:
                    continue  # most dead processes already left
                for group in draw(st.lists(st.sampled_from(GROUPS), min_size=1,
                                           max_size=2, unique=True)):
                    entries.append(MemberEntry(scope="default", group=group, pid=pid,
                                               key=f"scopes/default/{name}/{creation}/{group}/0"))
    return Truth(running=running, alive=alive, entries=entries)


def observe(truth: Truth, cut_off: set[str]) -> dict[str, OwnerView]:
    owners: dict[str, OwnerView] = {}
    for name, current in truth.running.items():
        reachable = current is not None and name not in cut_off
        states: dict[Pid, PidState] = {}
        if reachable:
            for entry in truth.entries:
                pid = entry.pid
                if pid.node == name:
                    states[pid] = "alive" if pid in truth.alive else "noproc"
        owners[name] = OwnerView(registered=current, answered=current if reachable else None,
                                 states=states)
    return owners


@settings(max_examples=400, deadline=None)
@given(clusters(), st.data(), st.sampled_from([0.25, 0.5, 1.0]))
def test_no_plan_removes_a_live_member_and_groups_keep_their_live_members(
        truth: Truth, data: st.DataObject, share: float) -> None:
    cut_off = data.draw(st.sets(st.sampled_from(sorted(truth.running))))
    plan = plan_reap(truth.entries, observe(truth, cut_off), max_dead_share=share)
    removed = [r.entry for r in plan.remove]
    assert not any(entry.pid in truth.alive for entry in removed)
    for group in GROUPS:
        listed = [e for e in truth.entries if e.group == group]
        gone = [e for e in removed if e.group == group]
        live_before = sum(1 for e in listed if e.pid in truth.alive)
        live_after = sum(1 for e in listed if e not in gone and e.pid in truth.alive)
        assert live_after == live_before  # Rule 1: no live member lost
        if gone:
            assert len(gone) < share * len(listed)  # Rule 2: a mass death is held
    # unreachable owners' entries are kept, never evidence
    for entry in removed:
        assert entry.pid.node not in cut_off or truth.running[entry.pid.node] != \
            entry.pid.creation


def test_a_healthy_cluster_gives_an_empty_plan() -> None:
    pids = [Pid("n1", 7, s) for s in (1, 2, 3)]
    entries = [MemberEntry(scope="default", group="g", pid=p, key="k") for p in pids]
    owners = {"n1": OwnerView(registered=7, answered=7, states=dict.fromkeys(pids, "alive"))}
    plan = plan_reap(entries, owners)
    assert plan.empty and plan.live == 3 and not plan.unreachable and not plan.held


def test_each_kind_of_evidence_and_an_unreachable_owner() -> None:
    live = [Pid("n1", 7, s) for s in range(1, 8)]
    orphan, stale, other, far = Pid("n9", 3, 1), Pid("n1", 7, 99), Pid("n2", 4, 1), \
        Pid("n3", 5, 1)
    entries = [MemberEntry(scope="default", group="g", pid=p, key=str(p))
               for p in [*live, orphan, stale, other, far]]
    owners = {
        "n1": OwnerView(registered=7, answered=7,
                        states={**dict.fromkeys(live, "alive"), stale: "noproc"}),
        "n9": OwnerView(registered=None, answered=None),
        "n2": OwnerView(registered=4, answered=6),  # restarted between read and ask
        "n3": OwnerView(registered=5, answered=None),
    }
    plan = plan_reap(entries, owners)
    assert {(r.entry.pid, r.evidence) for r in plan.remove} == {
        (orphan, "session-ended"), (stale, "noproc"), (other, "other-incarnation")}
    assert [e.pid for e in plan.unreachable] == [far]


def test_half_a_group_looking_dead_holds_the_group() -> None:
    pids = [Pid("n1", 7, 1), Pid("n2", 3, 1)]
    entries = [MemberEntry(scope="s", group="g", pid=p, key=str(p)) for p in pids]
    owners = {"n1": OwnerView(registered=7, answered=7, states={pids[0]: "alive"}),
              "n2": OwnerView(registered=None, answered=None)}
    plan = plan_reap(entries, owners)
    assert plan.empty and plan.held[0].group == "g" and "cut off" in plan.held[0].reason
    assert len(plan_reap(entries, owners, max_dead_share=1.0).remove) == 1


def test_a_name_the_caller_did_not_describe_is_never_reaped() -> None:
    entries = [MemberEntry(scope="s", group="g", pid=Pid("n1", 7, 1), key="k")]
    plan = plan_reap(entries, {}, max_dead_share=1.0)
    assert plan.empty and len(plan.unreachable) == 1


@pytest.mark.parametrize("share", [0, -1, 1.5])
def test_a_share_outside_0_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="max_dead_share"):
        plan_reap([], {}, max_dead_share=share)
