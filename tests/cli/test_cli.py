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
        if request == "odd":  # values JSON cannot hold as they are
            return {"nan": float("nan"), "inf": float("-inf"), "raw": b"hi", "pair": (2, 3)}
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


async def test_call_and_cast_global_reach_the_process_registered_cluster_wide(
        serving: shoal.Node, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    pid = await serving.spawn(Counter)
    await serving.register_global("the-counter", pid)
    argv = ["call", "--global", "the-counter", '"incr"', "--store", store_url]
    assert await asyncio.to_thread(main, argv) == 0
    assert json.loads(capsys.readouterr().out) == 1
    assert await serving.call(pid, "incr") == 2  # that very process was called
    argv = ["call", "--global", "nobody", '"incr"', "--store", store_url]
    assert await asyncio.to_thread(main, argv) == 1
    assert "no process registered globally as 'nobody'" in capsys.readouterr().err
    argv = ["cast", "--global", "the-counter", '"incr"', "--store", store_url, "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    assert json.loads(capsys.readouterr().out) == {"pid": str(pid), "delivered": True}
    argv = ["cast", "--global", "nobody", '"incr"', "--store", store_url]
    assert await asyncio.to_thread(main, argv) == 1
    assert "no process registered globally as 'nobody'" in capsys.readouterr().err


def test_call_with_a_request_that_is_not_json_is_a_usage_error(store_url: str) -> None:
    assert main(["call", "counters", "{not json", "--store", store_url]) == 2


def test_a_bad_store_url_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nodes", "--store", "ftp://nowhere"]) == 2
    assert "url" in capsys.readouterr().err


def test_run_refuses_an_app_that_does_not_exist(store_url: str) -> None:
    assert main(["run", "no_such_module:setup", "--node", "x", "--store", store_url]) == 2


def test_run_rejects_a_session_ttl_that_is_not_positive(store_url: str) -> None:
    assert main(["run", "shoal.testing.agent:setup", "--node", "x", "--store", store_url,
                 "--session-ttl", "0"]) == 2


def test_run_refuses_incomplete_peer_tls_naming_what_is_missing(
        store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("unused: refused before it is read\n")
    assert main(["run", "shoal.testing.agent:setup", "--node", "x", "--store", store_url,
                 "--tls-cert", str(cert)]) == 2
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
                 "--advertise", "host:port"]) == 2
    assert "advertise" in capsys.readouterr().err


# -- exit codes: every usage error is 2 ------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["nodes", "--store", "foo://x"],
    ["nodes", "--store", "sqlite://"],
    ["groups", "--store", "etcd://127.0.0.1:2379?no_such_option=1"],
    ["call", "counters", '"incr"', "--timeout", "-1"],
    ["call", "counters", '"incr"', "--timeout", "nan"],
    ["call", "counters", '"incr"', "--strategy", "hash"],
    ["call", "counters", "NaN"],
    ["run", "myapp", "--node", "x"],
    ["run", "shoal.testing.agent:setup", "--node", "x", "--listen", "notanaddress"],
    ["run", "shoal.testing.agent:setup", "--node", ""],
    ["run", "shoal.testing.agent:setup", "--node", "x", "--heartbeat-timeout", "-1"],
    ["demo", "--nodes", "2"],
])
def test_every_usage_error_exits_2_and_changes_nothing(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no store, no secret, nothing


def test_an_etcd_url_without_hosts_is_echoed_as_typed(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nodes", "--store", "etcd://"]) == 2
    err = capsys.readouterr().err
    assert "url='etcd://'" in err
    assert "cluster=" not in err


# -- read-only commands ---------------------------------------------------------------

@pytest.mark.parametrize("command", [["nodes"], ["groups"], ["members", "counters"],
                                     ["audit"]])
def test_read_only_commands_refuse_a_store_that_does_not_exist(
        command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no" / "such" / "dir" / "c.db"
    assert main([*command, "--store", f"sqlite://{missing}"]) == 1
    assert f"no cluster at {missing}" in capsys.readouterr().err
    # The default store, in a directory that holds none.
    assert main(command) == 1
    assert f"no cluster at {tmp_path / '.shoal' / 'cluster.db'}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_call_refuses_a_store_that_does_not_exist(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["call", "counters", '"incr"']) == 1
    assert "no cluster at" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


async def test_reading_a_stopped_cluster_creates_and_changes_no_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    monkeypatch.chdir(tmp_path)
    async with shoal.Node("api-1") as node:  # the default store, ./.shoal/cluster.db
        await node.groups.join("counters", await node.spawn(Counter))
    before = _tree(tmp_path)
    assert not any(name.endswith(("-wal", "-shm")) for name in before)
    for command in (["nodes", "--json"], ["groups", "--json"],
                    ["members", "counters", "--json"], ["audit", "--json"]):
        assert await asyncio.to_thread(main, command) == 0
        assert json.loads(capsys.readouterr().out) == []
    assert _tree(tmp_path) == before


READER = """
import os, sys
import shoal.cli.inspect, shoal.store, sqlite3, json, asyncio, concurrent.futures
from shoal.cli import main
os.setgid(65534)  # after the imports: the interpreter may live where 65534 cannot read
os.setuid(65534)
sys.exit(main(["nodes", "--json", "--store", sys.argv[1]]))
"""


async def test_read_only_commands_need_no_write_access(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As another user who may read the store but not write it (as root:
    uid 65534; otherwise the directory and files are made read-only)."""
    import asyncio
    import shutil
    import stat
    import subprocess
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="shoal-ro-"))  # tmp_path is private to its user
    try:
        db = root / "store" / "cluster.db"
        reader = READER if os.geteuid() == 0 else READER.replace("os.set", "# os.set")

        def read() -> subprocess.CompletedProcess[str]:
            for path in [root, *root.rglob("*")]:
                path.chmod(0o555 if path.is_dir() else 0o444)
            try:
                return subprocess.run([sys.executable, "-c", reader, f"sqlite://{db}"],
                                      capture_output=True, text=True, timeout=60, check=False)
            finally:
                for path in [root, *root.rglob("*")]:
                    path.chmod(stat.S_IRWXU if path.is_dir() else 0o600)

        async with shoal.Node("api-1", store=f"sqlite://{db}", secret=SECRET) as node:
            await node.groups.sync()
            live = await asyncio.to_thread(read)   # a node has the store open (a -wal exists)
            assert live.returncode == 0, live.stderr
            assert [n["name"] for n in json.loads(live.stdout)] == ["api-1"]
        stopped = await asyncio.to_thread(read)    # nobody has it open (no -wal)
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(stopped.stdout) == []
    finally:
        shutil.rmtree(root)


# -- call -----------------------------------------------------------------------------

def _strict_json(text: str) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


async def test_call_prints_only_valid_json_with_or_without_json_flag(
        serving: shoal.Node, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    expected = {"nan": None, "inf": None, "raw": "hi", "pair": [2, 3]}
    assert await asyncio.to_thread(main, ["call", "counters", '"odd"', "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert _strict_json(out) == expected
    assert len(out.strip().splitlines()) == 1
    assert await asyncio.to_thread(
        main, ["call", "counters", '"odd"', "--store", store_url, "--json"]) == 0
    out = capsys.readouterr().out
    assert _strict_json(out) == expected
    assert len(out.strip().splitlines()) > 1  # indented, as the other commands' --json


# -- run --------------------------------------------------------------------------------

APP = """
import shoal

async def setup(node: shoal.Node) -> None:
    raise RuntimeError("setup failed on purpose")

def not_async(node: shoal.Node) -> None:
    pass
"""


@pytest.fixture
def cliapp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "cliapp_for_tests.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "cliapp_for_tests"


@pytest.mark.parametrize(("function", "message"), [
    ("nosuch", "no function nosuch in cliapp_for_tests"),
    ("not_async", "not_async in cliapp_for_tests is not one"),
])
def test_run_says_what_is_wrong_with_the_app(
        cliapp: str, function: str, message: str, store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{cliapp}:{function}", "--node", "x", "--store", store_url]) == 2
    assert message in capsys.readouterr().err


def test_verbose_is_accepted_after_the_command_too(
        cliapp: str, store_url: str, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    # exit 1 (the setup raised), not 2 (an unknown option)
    assert main(["run", "-v", f"{cliapp}:setup", "--node", "x", "--store", store_url]) == 1
    assert "setup failed on purpose" in caplog.text
    assert main(["nodes", "-v", "--store", store_url]) == 0
    for command in ("run", "nodes", "groups", "members", "call", "demo"):
        assert main([command, "--help"]) == 0
        assert "-v, --verbose" in capsys.readouterr().out


async def test_a_running_node_logs_its_sigusr1_dump_at_info(store_url: str) -> None:
    import asyncio
    import signal
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.cli", "run", "shoal.testing.agent:setup",
        "--node", "dumped", "--store", store_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 30)
        proc.send_signal(signal.SIGUSR1)
        async with asyncio.timeout(30):
            line = b""
            while b"node dumped (creation" not in line:
                line = await proc.stderr.readline()
                assert line, "stderr ended without the dump"
        assert b" INFO " in line and b"WARNING" not in line
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_the_sigusr1_dump_names_each_process_s_groups() -> None:
    from shoal.cli.running import dump_node
    from shoal.testing.agent import Echo

    async with shoal.Node("dumped", store="memory://", listen=None) as node:
        pid = await node.spawn(Echo)
        await node.scope("jobs").join("workers", pid)
        assert f"  {pid} Echo queued=0 links=0 groups=[('jobs', 'workers')]" \
            in dump_node(node).splitlines()


def test_run_on_a_listen_address_in_use_fails_the_job_with_a_message(
        store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        host, port = taken.getsockname()
        assert main(["run", "shoal.testing.agent:setup", "--node", "x", "--store", store_url,
                     "--listen", f"{host}:{port}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
