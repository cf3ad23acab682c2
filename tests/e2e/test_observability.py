"""The HTTP endpoint and JSON logs of a real ``shoal run`` node.

Nodes run as OS processes (``observe_app``) with ``--http 127.0.0.1:0`` and
``--log-format json``; the port is read from the node's own
``http_listening`` log event. Requests are real HTTP GETs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import shoal
from shoal.cli import main
from shoal.testing.cluster import SECRET, LocalCluster, wait_until

HERE = str(Path(__file__).resolve().parent)

FAMILIES = {
    "shoal_calls", "shoal_call_duration_seconds", "shoal_processes", "shoal_mailbox_messages",
    "shoal_mailbox_max_messages", "shoal_group_members", "shoal_group_routable_members",
    "shoal_peers", "shoal_store_session_up", "shoal_store_writes", "shoal_store_lag_seconds",
    "shoal_restarts", "shoal_admin_actions",
}


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def aget(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, port, path)


def json_lines(log: Path) -> list[dict[str, object]]:
    """Every complete line of a node's log, each parsed as JSON (fails on
    any other line). The node may be writing its last line as we read."""
    *complete, _partial = log.read_text().split("\n")
    return [json.loads(line) for line in complete]


def http_port(log: Path) -> int | None:
    for record in json_lines(log):
        if record["event"] == "http_listening":
            return int(str(record["address"]).rpartition(":")[2])
    return None


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": HERE, "SHOAL_HTTP": "127.0.0.1:0", "SHOAL_LOG_FORMAT": "json",
            "SHOAL_HEALTH_LAG": "0.5", "SHOAL_AGENT_WORKERS": "echoes:2", **extra}


async def test_metrics_hold_every_family_with_plausible_values(tmp_path: Path) -> None:
    async with LocalCluster(["a", "b"], app="observe_app:setup",
                            env=env(tmp_path)) as cluster:
        client = cluster.client
        log = cluster.nodes["a"].log
        await wait_until(lambda: http_port(log) is not None, what="a's HTTP port")
        port = http_port(log)
        assert port is not None
        for _ in range(20):  # group calls from a: local and remote members
            assert (await cluster.control("a", "group_call", "echoes", 0, 5.0, "round_robin",
                                          False))[0] == "ok"
        assert (await cluster.control("a", "call", await cluster.wait_control("b"), ["creation"],
                                      5.0))[0] == "ok"
        status, text = await aget(port, "/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert set(families) >= FAMILIES

        def value(family: str, **labels: str) -> float:
            return sum(s.value for s in families[family].samples
                       if s.name in (family, family + "_total")
                       and all(s.labels.get(k) == v for k, v in labels.items()))
        assert value("shoal_calls", kind="group", outcome="ok") >= 20
        assert value("shoal_calls", kind="remote") >= 1
        assert value("shoal_processes") >= 3  # Control, Lingers, Blocker
        assert value("shoal_group_members", scope="default", group="blocker") == 2
        assert value("shoal_group_routable_members", scope="default", group="blocker") == 2
        assert value("shoal_peers", state="connected") >= 1
        assert value("shoal_store_session_up") == 1
        assert value("shoal_store_writes") >= 1
        assert 0 <= value("shoal_store_lag_seconds") < 5
        count = [s.value for s in families["shoal_call_duration_seconds"].samples
                 if s.name.endswith("_count") and s.labels["kind"] == "group"]
        assert count == [value("shoal_calls", kind="group")]
        assert client.running


async def test_healthz_fails_while_the_loop_is_blocked_past_its_bound(tmp_path: Path) -> None:
    async with LocalCluster(["a"], app="observe_app:setup", env=env(tmp_path)) as cluster:
        log = cluster.nodes["a"].log
        await wait_until(lambda: http_port(log) is not None, what="a's HTTP port")
        port = http_port(log)
        assert port is not None
        assert await aget(port, "/healthz") == (200, "ok\n")
        await wait_until(lambda: bool(cluster.client.groups.get_members("blocker")),
                         what="the client to see a's blocker")
        cluster.client.groups.cast("blocker", 1.5)  # blocks a's loop for 1.5 s (bound 0.5 s)
        # The request waits in the socket while the loop is blocked; it is
        # answered right after, and says how late the loop was.
        await wait_until(lambda: cluster.nodes["a"].running, what="a running")
        # The cast may not have reached a yet (a loaded machine): ask again
        # until one request waits through the block, bounded in time.
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 15.0
        status, text = await aget(port, "/healthz")
        while status == 200 and loop.time() < give_up:
            status, text = await aget(port, "/healthz")
        assert status == 503 and "event loop" in text
        await wait_until(lambda: get(port, "/healthz")[0] == 200, what="healthy again")


async def test_readyz_before_setup_while_serving_and_during_a_drain(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    store = f"sqlite://{tmp_path}/cluster.db"
    log = tmp_path / "solo.log"
    environ = dict(os.environ, SHOAL_SECRET=SECRET, OBSERVE_GATE=str(gate),
                   OBSERVE_LINGER="3", **env(tmp_path))
    environ.pop("SHOAL_SECRET_FILE", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.cli", "run", "observe_app:setup", "--node", "solo",
        "--store", store, stdout=asyncio.subprocess.DEVNULL, stderr=log.open("wb"),
        env=environ)
    try:
        await wait_until(lambda: log.exists() and http_port(log) is not None,
                         what="solo's HTTP port", timeout=30)
        port = http_port(log)
        assert port is not None
        status, text = await aget(port, "/readyz")
        assert status == 503 and "not set up" in text
        gate.touch()
        await wait_until(lambda: get(port, "/readyz")[0] == 200, what="solo ready")
        os.environ["SHOAL_SECRET"] = SECRET
        try:
            drain = asyncio.ensure_future(asyncio.to_thread(
                main, ["drain", "solo", "--store", store, "--yes"]))
            # Lingers' terminate holds the stop for 3 s: the endpoint still answers.
            answers: list[tuple[int, str]] = []
            await wait_until(lambda: answers.append(get(port, "/readyz")) or
                             answers[-1][0] != 200, what="readyz to change")
            assert answers[-1] == (503, "draining\n")
            assert process.returncode is None
            assert await drain == 0
        finally:
            del os.environ["SHOAL_SECRET"]
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()


async def test_json_logs_of_a_run_with_a_peer_killed(tmp_path: Path) -> None:
    async with LocalCluster(["a", "b"], app="observe_app:setup",
                            env=env(tmp_path)) as cluster:
        await cluster.control("a", "call", await cluster.wait_control("b"), ["creation"], 5.0)
        b_creation = cluster.nodes["b"].creation
        cluster.kill9("b")
        log = cluster.nodes["a"].log

        def peer_down() -> bool:
            return any(r["event"] == "peer_down" and r["peer"] == "b"
                       for r in json_lines(log))
        await wait_until(peer_down, what="a logging b down")
        records = json_lines(log)  # every line parses
        for record in records:
            assert {"time", "level", "node", "event", "message"} <= set(record)
            assert record["node"] == "a"
        down = next(r for r in records if r["event"] == "peer_down")
        assert down["level"] == "INFO" and down["peer_creation"] == b_creation
        assert down["reason"]
        assert any(r["event"] == "peer_connected" and r["peer"] == "b" for r in records)


def test_a_bad_http_address_is_bad_usage_in_one_line(capsys: object) -> None:
    for bad in ("nohost", "127.0.0.1:99999", ":80", "127.0.0.1:http"):
        assert main(["run", "x:y", "--node", "n", "--http", bad]) == 2
        err = capsys.readouterr().err  # type: ignore[attr-defined]
        assert err.count("\n") == 1 and "http" in err


def test_node_refuses_a_bad_http_argument() -> None:
    try:
        shoal.Node("n", store="memory://", http="no-port")
    except shoal.BadArgument as exc:
        assert "http" in str(exc)
    else:
        raise AssertionError("a bad http address was accepted")
