"""The ``shoal`` command, driven through ``main(argv)`` as a user would type it."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shoal
from shoal.cli import main

SECRET = "cli-test-secret-0123456789abcdef"


class Counter(shoal.GenServer):
    async def init(self) -> None:
        self.n = 0

    async def handle_call(self, request: object, caller: shoal.Caller) -> object:
        if request == "incr":
            self.n += 1
            return self.n
        raise shoal.BadRequest(request)


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    return f"sqlite://{tmp_path}/cluster.db"


@pytest.fixture
async def serving(store_url: str) -> AsyncIterator[shoal.Node]:
    async with shoal.Node("api-1", store=store_url, secret=SECRET) as node:
        pid = await node.spawn(Counter)
        await node.groups.join("counters", [pid, pid])
        await node.groups.sync()  # in the store before a command reads it
        yield node


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "run", "nodes", "groups", "members", "call"):
        assert command in out


def test_unknown_command_is_a_usage_error() -> None:
    assert main(["no-such-command"]) == 2


def test_demo_passes_with_a_crashing_and_a_killed_worker(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workers", "3", "--callers", "4", "--calls", "2000"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out
    assert "demo passed" in out


@pytest.mark.parametrize(("flags", "traceback"), [([], False), (["-v"], True)])
def test_the_demos_crash_report_is_one_line_unless_verbose(
        flags: list[str], traceback: bool, caplog: pytest.LogCaptureFixture) -> None:
    assert main([*flags, "demo", "--workers", "3", "--callers", "4", "--calls", "2000"]) == 0
    [report] = [r.getMessage() for r in caplog.records if " crashed: " in r.getMessage()]
    assert "RuntimeError: worker bug triggered on purpose" in report
    assert ("Traceback" in report) is traceback


def test_demo_rejects_a_single_worker() -> None:
    assert main(["demo", "--workers", "1"]) == 2


async def test_nodes_groups_and_members_show_a_live_node(
        serving: shoal.Node, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The commands run their own event loop: run them in a worker thread.
    import asyncio

    code = await asyncio.to_thread(main, ["nodes", "--store", store_url, "--json"])
    assert code == 0
    nodes = json.loads(capsys.readouterr().out)
    assert [n["name"] for n in nodes] == ["api-1"]
    assert nodes[0]["os_pid"] == os.getpid()

    assert await asyncio.to_thread(main, ["groups", "--store", store_url, "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert groups == [{"scope": "default", "group": "counters", "members": 2, "nodes": 1}]

    assert await asyncio.to_thread(main, ["members", "counters", "--store", store_url]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["PID", "NODE", "JOINS"]
    assert table[1].split()[1:] == ["api-1", "2"]


async def test_call_from_the_shell_reaches_a_member(
        serving: shoal.Node, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    assert await asyncio.to_thread(main, ["call", "counters", '"incr"', "--store", store_url]) == 0
    assert json.loads(capsys.readouterr().out) == 1
    # the short-lived node left nothing behind
    assert await asyncio.to_thread(main, ["nodes", "--store", store_url, "--json"]) == 0
    assert [n["name"] for n in json.loads(capsys.readouterr().out)] == ["api-1"]


async def test_call_to_an_empty_group_fails_with_no_members(
        serving: shoal.Node, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    assert await asyncio.to_thread(main, ["call", "nobody", "1", "--store", store_url]) == 1
    assert "no live members" in capsys.readouterr().err


def test_call_with_a_request_that_is_not_json_is_a_usage_error(store_url: str) -> None:
    assert main(["call", "counters", "{not json", "--store", store_url]) == 2


def test_a_bad_store_url_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nodes", "--store", "ftp://nowhere"]) == 1
    assert "url" in capsys.readouterr().err


def test_run_refuses_an_app_that_does_not_exist(store_url: str) -> None:
    assert main(["run", "no_such_module:setup", "--node", "x", "--store", store_url]) == 1


def test_run_rejects_a_session_ttl_that_is_not_positive(store_url: str) -> None:
    assert main(["run", "shoal.testing.agent:setup", "--node", "x", "--store", store_url,
                 "--session-ttl", "0"]) == 1


def test_run_refuses_incomplete_peer_tls_naming_what_is_missing(
        store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("unused: refused before it is read\n")
    assert main(["run", "shoal.testing.agent:setup", "--node", "x", "--store", store_url,
                 "--tls-cert", str(cert)]) == 1
    err = capsys.readouterr().err
    assert "missing: tls_key (or SHOAL_TLS_KEY), tls_ca (or SHOAL_TLS_CA)" in err


async def test_run_with_tls_flags_serves_tls_peers_and_call_uses_the_environment(
        store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import sys

    from shoal.testing.tls import make_pki

    pki = make_pki(tmp_path / "pki", names=("served", "shell"))
    env = dict(os.environ, SHOAL_AGENT_WORKERS="echoes:2")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.cli", "run", "shoal.testing.agent:setup",
        "--node", "served", "--store", store_url, "--tls-cert", str(pki.cert("served")),
        "--tls-key", str(pki.key("served")), "--tls-ca", str(pki.ca),
        "--tls-server-name", "localhost",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"ready" in line
        # Without TLS the shell cannot reach the member; with it, it can.
        assert await asyncio.to_thread(
            main, ["call", "echoes", '"hi"', "--store", store_url, "--timeout", "2"]) == 1
        capsys.readouterr()
        monkeypatch.setenv("SHOAL_TLS_CERT", str(pki.cert("shell")))
        monkeypatch.setenv("SHOAL_TLS_KEY", str(pki.key("shell")))
        monkeypatch.setenv("SHOAL_TLS_CA", str(pki.ca))
        assert await asyncio.to_thread(
            main, ["call", "echoes", '"hi"', "--store", store_url]) == 0
        assert json.loads(capsys.readouterr().out) == ["served", "hi"]
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


def test_run_refuses_a_bad_advertise_address(
        store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "shoal.testing.agent:setup", "--node", "x", "--store", store_url,
                 "--advertise", "host:port"]) == 1
    assert "advertise" in capsys.readouterr().err
