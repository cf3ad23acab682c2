"""``shoal top`` against a real 3-node cluster: one report lists the nodes
and their groups, agrees with a node's ``/metrics``, and shows a node
killed with SIGKILL as down.

Nodes run as OS processes (``observe_app``, the test agent plus a
``blocker`` group) with ``--http 127.0.0.1:0``; the command runs in a
thread through ``main(argv)``, as a shell would run it beside them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_observability import aget, env, http_port, json_lines

from shoal.cli import main
from shoal.testing.agent import CONTROL_SCOPE
from shoal.testing.cluster import SECRET, LocalCluster, wait_until


async def top(capsys: pytest.CaptureFixture[str], store: str, *flags: str) -> str:
    code = await asyncio.to_thread(main, ["top", "--store", store, "--interval", "0.3",
                                          *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def cli_connections(log: Path) -> int:
    """Connections from operators' commands a node has logged."""
    return sum(1 for r in json_lines(log) if r["event"] == "peer_connected"
               and str(r["peer"]).startswith("shoal-cli-"))


def by_node(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["node"]: row for row in report["nodes"]}


async def test_top_lists_nodes_and_groups_agrees_with_metrics_and_shows_a_killed_node_down(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    monkeypatch.delenv("SHOAL_SECRET_FILE", raising=False)
    async with LocalCluster(["a", "b", "c"], app="observe_app:setup",
                            env=env(tmp_path)) as cluster:
        log = cluster.nodes["a"].log
        await wait_until(lambda: http_port(log) is not None, what="a's HTTP port")
        # Every node set up (the cluster waits for registration only, with this app).
        client = cluster.client
        await wait_until(lambda: len(client.groups.get_members("blocker")) == 3
                         and len(client.groups.get_members("echoes")) == 6
                         and all(client.scope(CONTROL_SCOPE).get_members(n) for n in "abc"),
                         what="every node's groups joined")
        for _ in range(20):  # group calls from a: local and remote members
            assert (await cluster.control("a", "group_call", "echoes", 0, 5.0, "round_robin",
                                          False))[0] == "ok"

        report = json.loads(await top(capsys, cluster.store, "--once", "--json"))
        nodes = by_node(report)
        assert set(nodes) == {"a", "b", "c", "test-client"}  # the test's own node too
        assert all(row["state"] == "up" for row in nodes.values())
        assert nodes["c"]["creation"] == cluster.nodes["c"].creation
        assert report["interval_s"] >= 0.3
        groups = {row["group"]: row for row in report["groups"]}
        assert groups["blocker"]["members"] == groups["blocker"]["routable"] == 3
        assert groups["blocker"]["members_by_owners"] == 3
        assert groups["echoes"]["members"] == 6  # echoes:2 on each node

        # The same run's /metrics of a: the same totals (nothing called in between).
        port = http_port(log)
        assert port is not None
        status, text = await aget(port, "/metrics")
        assert status == 200
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

        def total(name: str, **labels: str) -> float:
            return sum(s.value for s in samples if s.name == name
                       and all(s.labels.get(k) == v for k, v in labels.items()))
        a = nodes["a"]
        assert a["calls"]["group"]["ok"] == total("shoal_calls_total", kind="group",
                                                 outcome="ok") >= 20
        assert a["calls_out_total"] == (total("shoal_calls_total", kind="local")
                                        + total("shoal_calls_total", kind="remote"))
        assert a["calls_in_total"] == (total("shoal_calls_total", kind="local")
                                       + total("shoal_calls_served_total"))
        assert a["calls_out_total"] >= 20 and a["processes"] == total("shoal_processes")

        text_report = await top(capsys, cluster.store)  # stdout is no terminal: text
        assert all(f"\n{name} " in text_report for name in ("a", "b", "c"))

        # c is killed while a report is being taken: after the first sample
        # asked it (a connection from the command is up), before the second.
        c_log = cluster.nodes["c"].log
        before = cli_connections(c_log)
        running = asyncio.ensure_future(asyncio.to_thread(
            main, ["top", "--store", cluster.store, "--interval", "3", "--once", "--json"]))
        await wait_until(lambda: cli_connections(c_log) > before,
                         what="the command asking c")
        cluster.kill9("c")
        assert await running == 0
        report = json.loads(capsys.readouterr().out)
        nodes = by_node(report)
        assert nodes["c"]["state"] == "down" and nodes["c"]["why"]
        assert nodes["a"]["state"] == nodes["b"]["state"] == "up"
