"""``/metrics`` of an in-process node: outcomes counted where they happen,
and the group families bounded to the largest groups plus ``_other``; the
admin ``stats`` op (``shoal top``'s source) bounded too, and agreeing with it."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import shoal
from shoal.cli.operate import ask
from shoal.store import MemoryStore
from shoal.testing.cluster import wait_until


class Worker(shoal.GenServer):
    mailbox_size = 1

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "crash":
            raise RuntimeError("asked to")
        if request == "slow":
            await asyncio.sleep(1)
        return request


async def scrape(node: shoal.Node) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    address = node.http_address
    assert address is not None

    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{address[1]}/metrics",
                                    timeout=10) as answer:
            return str(answer.read().decode())
    text = await asyncio.to_thread(get)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def calls(samples: dict[Any, float], kind: str, outcome: str) -> float:
    return samples[("shoal_calls_total", (("kind", kind), ("outcome", outcome)))]


async def test_local_call_outcomes_are_counted_by_kind() -> None:
    async with shoal.Node("m", store="memory://", http="127.0.0.1:0") as node:
        pid = await node.spawn(Worker)
        for i in range(5):
            assert await node.call(pid, i) == i
        with pytest.raises(shoal.CallTimeout):
            await node.call(pid, "slow", timeout=0.05)
        # Still busy with "slow": the first call queues, the second finds the mailbox full.
        first, second = await asyncio.gather(node.call(pid, 1), node.call(pid, 2),
                                             return_exceptions=True)
        assert first == 1 and isinstance(second, shoal.Overloaded)
        other = await node.spawn(Worker)
        with pytest.raises(shoal.CallError):
            await node.call(other, "crash")
        with pytest.raises(shoal.NoSuchProcess):
            await node.call(other, 1)
        samples = await scrape(node)
        assert calls(samples, "local", "ok") == 6
        assert calls(samples, "local", "timeout") == 1
        assert calls(samples, "local", "overloaded") == 1
        assert calls(samples, "local", "error") == 1
        assert calls(samples, "local", "noproc") == 1


async def test_group_families_list_the_largest_groups_and_sum_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_METRICS_TOP_GROUPS", "2")
    async with shoal.Node("m", store="memory://", http="127.0.0.1:0") as node:
        pids = [await node.spawn(Worker) for _ in range(4)]
        for size, group in ((4, "big"), (3, "mid"), (2, "small"), (1, "tiny")):
            await node.groups.join(group, pids[:size])
        samples = await scrape(node)
        members = {dict(labels)["group"]: value for (name, labels), value in samples.items()
                   if name == "shoal_group_members"}
        assert members == {"big": 4, "mid": 3, "_other": 3}
        routable = {dict(labels)["group"]: value for (name, labels), value in samples.items()
                    if name == "shoal_group_routable_members"}
        assert routable == members
        assert await node.groups.call("big", 7) == 7
        samples = await scrape(node)
        assert calls(samples, "group", "ok") == 1
        assert samples[("shoal_call_duration_seconds_count", (("kind", "group"),))] == 1


SECRET = "stats-test-secret-0123456789abcdef"


async def test_stats_counts_calls_made_and_served_and_agrees_with_metrics(
        tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET, http="127.0.0.1:0") as a, \
            shoal.Node("b", store=store, secret=SECRET) as b:
        pids = [await a.spawn(Worker) for _ in range(3)]
        for size, group in ((3, "big"), (2, "mid"), (1, "small")):
            await a.groups.join(group, pids[:size])
        await a.groups.sync()
        for i in range(4):
            assert await a.call(pids[0], i) == i  # local, made and served by a
        await wait_until(lambda: "a" in b.cluster_view.names())
        for i in range(5):
            assert await b.call(pids[1], i) == i  # remote, made by b, served by a
        answer = await ask(b, "a", "stats", {"top": 2}, 5.0)
        assert answer["node"] == "a" and answer["creation"] == a.creation
        assert answer["processes"] == 3 and answer["mailbox_max"] == 0
        assert answer["calls"]["local"]["ok"] == 4 and answer["served"] == 5
        assert [(g["group"], g["members"], g["local_members"], g["routable"])
                for g in answer["groups"]] == [("big", 3, 3, 3), ("mid", 2, 2, 2)]
        assert answer["groups_omitted"] == 1
        assert answer["peers"]["connected"] == 1 and answer["suspects"] == []
        assert len(answer["durations"]["remote"]) == len(answer["buckets"]) + 1
        samples = await scrape(a)
        for outcome, count in answer["calls"]["local"].items():
            assert samples[("shoal_calls_total", (("kind", "local"),
                                                  ("outcome", outcome)))] == count
        assert samples[("shoal_calls_served_total", ())] == 5
        # The admin requests it received so far: this one and none other.
        assert answer["admin_actions"] == {"stats": 1}
        assert (await ask(b, "a", "stats", {}, 5.0))["admin_actions"] == {"stats": 2}
        with pytest.raises(shoal.BadRequest, match="top"):
            await ask(b, "a", "stats", {"top": -1}, 5.0)


async def test_remote_call_outcomes_are_counted_and_timed_by_kind() -> None:
    store = MemoryStore()
    async with shoal.Node("a", store=store, secret=SECRET) as a, \
            shoal.Node("b", store=store, secret=SECRET, http="127.0.0.1:0") as b:
        pid = await a.spawn(Worker)
        await wait_until(lambda: "a" in b.cluster_view.names())
        for i in range(3):  # the first dials; the others go out on the open connection
            assert await b.call(pid, i) == i
        with pytest.raises(shoal.CallError):
            await b.call(pid, "crash")
        with pytest.raises(shoal.NoSuchProcess):
            await b.call(pid, 1)  # its owner answers "no such process"
        slow = await a.spawn(Worker)
        with pytest.raises(shoal.CallTimeout):
            await b.call(slow, "slow", timeout=0.05)
        samples = await scrape(b)
        assert calls(samples, "remote", "ok") == 3
        assert calls(samples, "remote", "error") == 1
        assert calls(samples, "remote", "noproc") == 1
        assert calls(samples, "remote", "timeout") == 1
        assert samples[("shoal_call_duration_seconds_count", (("kind", "remote"),))] == 6
        assert b._remote.pending == {}  # every call left its table


async def test_busy_polling_is_exported_as_time_polled_and_pauses() -> None:
    store = MemoryStore()
    async with shoal.Node("a", store=store, secret=SECRET) as a, \
            shoal.Node("b", store=store, secret=SECRET, http="127.0.0.1:0",
                       busy_poll_us=2_000) as b:
        pid = await a.spawn(Worker)
        await wait_until(lambda: "a" in b.cluster_view.names())
        assert await b.call(pid, 1) == 1
        await wait_until(lambda: not b.busy_poll.polling)
        samples = await scrape(b)
        polled = samples[("shoal_busy_poll_seconds_total", ())]
        assert polled == b.busy_poll.polled_seconds
        assert polled >= 0.002 or b.busy_poll.backoffs > 0  # a whole window, unless paused
        assert samples[("shoal_busy_poll_pauses_total", ())] == b.busy_poll.backoffs
