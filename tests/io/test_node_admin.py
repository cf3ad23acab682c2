"""The admin channel: CALLs to a node's serial 0, answered by the owner.

Asked directly, without the CLI's planning: the owning node must keep its
guards by itself (G5), refuse what it does not understand in one line, and
stay a plain "noproc" for any other CALL to serial 0 (ask_alive's barrier).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.runtime.admin import admin_request

SECRET = "admin-test-secret-0123456789abcdef"


class Idle(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node, list[shoal.Pid]]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("owner", store=store, secret=SECRET) as owner, \
            shoal.Node("asker", store=store, secret=SECRET) as asker:
        pids = [await owner.spawn(Idle) for _ in range(2)]
        await owner.groups.join("g", pids)
        await owner.groups.sync()
        yield owner, asker, pids


def serial0(node: shoal.Node) -> shoal.Pid:
    return shoal.Pid(node.name, node.creation, 0)


async def test_the_owner_refuses_an_eviction_that_empties_the_group(
        pair: tuple[shoal.Node, shoal.Node, list[shoal.Pid]]) -> None:
    owner, asker, pids = pair
    with pytest.raises(shoal.BadRequest, match="without a live member"):
        await asker.call(serial0(owner), admin_request(
            "evict", {"scope": "default", "group": "g", "pids": pids}))
    assert sorted(owner.groups.get_members("g")) == sorted(pids)
    answer = await asker.call(serial0(owner), admin_request(
        "evict", {"scope": "default", "group": "g", "pids": pids[:1]}))
    assert answer == {"evicted": pids[:1], "live_members_left": 1}
    assert owner.groups.get_members("g") == pids[1:]


async def test_the_owner_refuses_pids_it_does_not_own_or_that_are_not_members(
        pair: tuple[shoal.Node, shoal.Node, list[shoal.Pid]]) -> None:
    owner, asker, pids = pair
    stranger = await asker.spawn(Idle)
    for bad, why in ((stranger, "not a process of this node"),
                     (shoal.Pid("owner", owner.creation - 1, 1), "not a process of this node"),
                     (await owner.spawn(Idle), "not a member of group 'g'")):
        with pytest.raises(shoal.BadRequest, match=why):
            await asker.call(serial0(owner), admin_request(
                "evict", {"group": "g", "pids": [pids[0], bad]}))
    assert sorted(owner.groups.get_members("g")) == sorted(pids)


async def test_alive_is_the_owners_word_per_pid(
        pair: tuple[shoal.Node, shoal.Node, list[shoal.Pid]]) -> None:
    owner, asker, pids = pair
    owner.kill(pids[1])
    await owner.wait_exit(pids[1])
    earlier = shoal.Pid("owner", owner.creation - 1, 1)
    later = shoal.Pid("owner", owner.creation + 1, 1)
    states = await asker.call(serial0(owner), admin_request(
        "alive", {"pids": [pids[0], pids[1], earlier, later, serial0(asker)]}))
    assert states == ["alive", "noproc", "noproc", "not-mine", "not-mine"]


@pytest.mark.parametrize(("request_term", "why"), [
    (["shoal.admin", 1, "format-disk", {}], "unknown admin operation 'format-disk'"),
    (["shoal.admin", 99, "ping", {}], "admin version 99 is not served"),
    (["shoal.admin", 1, "ping", ["not", "a", "map"]], "must be a map"),
    (["shoal.admin", 1, "alive", {"pids": "all"}], "pids must be a list of pids"),
    (["shoal.admin", 1, "members", {"group": ""}], "non-empty strings"),
])
async def test_a_malformed_admin_request_is_refused_in_one_line(
        pair: tuple[shoal.Node, shoal.Node, list[shoal.Pid]], request_term: list[Any],
        why: str) -> None:
    owner, asker, _ = pair
    with pytest.raises(shoal.BadRequest, match=why):
        await asker.call(serial0(owner), request_term)
    assert owner.running  # nothing crashed


async def test_any_other_call_to_serial_0_is_still_noproc(
        pair: tuple[shoal.Node, shoal.Node, list[shoal.Pid]]) -> None:
    owner, asker, _ = pair
    for request in ("ping", ["shoal.admin", 1, "ping"], None):
        with pytest.raises(shoal.NoSuchProcess):
            await asker.call(serial0(owner), request)
    # and an admin request for another incarnation is not this node's
    with pytest.raises(shoal.NoSuchProcess):
        await asker.call(shoal.Pid("owner", owner.creation - 1, 0),
                         admin_request("ping", {}))


async def test_members_reports_queue_length_per_local_member(
        pair: tuple[shoal.Node, shoal.Node, list[shoal.Pid]]) -> None:
    owner, asker, pids = pair
    rows = await asker.call(serial0(owner), admin_request("members", {"group": "g"}))
    joined = [row.pop("joined_s") for row in rows]
    assert rows == [{"pid": pid, "alive": True, "queue_len": 0, "joins": 1}
                    for pid in sorted(pids)]
    assert all(isinstance(s, float) and 0 <= s < 60 for s in joined), joined


async def test_forget_refuses_a_live_pid_and_drops_only_dead_ones(
        pair: tuple[shoal.Node, shoal.Node, list[shoal.Pid]]) -> None:
    owner, asker, pids = pair
    with pytest.raises(shoal.BadRequest, match=f"alive, not forgotten: {pids[0]}"):
        await asker.call(serial0(owner), admin_request("forget", {"pids": pids}))
    assert sorted(owner.groups.get_members("g")) == sorted(pids)
    owner.kill(pids[1])
    await owner.wait_exit(pids[1])
    # the exit path already left the group (G1): nothing is left to forget
    answer = await asker.call(serial0(owner), admin_request("forget", {"pids": [pids[1]]}))
    assert answer == {"forgotten": []}
    assert owner.groups.get_members("g") == [pids[0]]
