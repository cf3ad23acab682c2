"""Node configuration: the secret, the store URL, the listen address."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import shoal
from shoal.runtime.config import load_secret, parse_listen


@pytest.fixture(autouse=True)
def no_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHOAL_SECRET", "SHOAL_SECRET_FILE", "SHOAL_STORE", "SHOAL_LISTEN",
                 "SHOAL_CLUSTER"):
        monkeypatch.delenv(name, raising=False)


def test_secret_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_SECRET", "from-the-environment-0123456789")
    given = "from-the-argument-0123456789"
    assert load_secret(given, "etcd://x") == given.encode()
    assert load_secret(None, "etcd://x") == b"from-the-environment-0123456789"


def test_secret_file_readable_by_others_is_refused(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret"
    path.write_text("a-long-enough-cluster-secret-0123")
    path.chmod(0o644)
    monkeypatch.setenv("SHOAL_SECRET_FILE", str(path))
    with pytest.raises(shoal.ConfigError, match="readable by others"):
        load_secret(None, "etcd://x")
    path.chmod(0o600)
    assert load_secret(None, "etcd://x") == b"a-long-enough-cluster-secret-0123"


def test_missing_secret_file_is_a_clear_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(shoal.ConfigError, match="cannot read secret file"):
        load_secret(None, "etcd://x")


def test_short_secret_is_refused() -> None:
    with pytest.raises(shoal.ConfigError, match="at least 16 bytes"):
        load_secret("short", "etcd://x")


def test_etcd_without_a_secret_is_refused() -> None:
    with pytest.raises(shoal.ConfigError, match="no cluster secret"):
        load_secret(None, "etcd://127.0.0.1:2379")


def test_embedded_store_generates_one_private_secret_per_directory(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/db/cluster.db"
    first = load_secret(None, url)
    assert load_secret(None, url) == first
    secret_file = tmp_path / "db" / "secret"
    assert secret_file.stat().st_mode & 0o077 == 0
    assert len(first) >= 16


def test_secret_of_a_wrong_type_names_the_argument() -> None:
    with pytest.raises(shoal.BadArgument) as info:
        load_secret(12345, "etcd://x")  # type: ignore[arg-type]
    assert info.value.argument == "secret"


@pytest.mark.parametrize(("text", "parsed"), [
    ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("0.0.0.0:7000", ("0.0.0.0", 7000)),
    ("[::1]:7000", ("::1", 7000)),
    ("localhost:65535", ("localhost", 65535)),
])
def test_listen_addresses_parse(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["", "7000", "host:", ":7000", "host:70000", "host:x", 7000])
def test_bad_listen_addresses_name_the_argument(text: object) -> None:
    with pytest.raises(shoal.BadArgument) as info:
        parse_listen(text)  # type: ignore[arg-type]
    assert info.value.argument == "listen"


def test_node_rejects_a_bad_store_url_when_started() -> None:
    node = shoal.Node("n", store="ftp://nowhere", secret="x" * 32)

    async def start() -> None:
        await node.start()

    import asyncio

    with pytest.raises(shoal.BadArgument) as info:
        asyncio.run(start())
    assert info.value.argument == "url"


def test_node_rejects_a_store_of_the_wrong_type() -> None:
    with pytest.raises(shoal.BadArgument) as info:
        shoal.Node("n", store=42)  # type: ignore[arg-type]
    assert info.value.argument == "store"


async def test_environment_configures_store_and_listen(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_STORE", f"sqlite://{tmp_path}/env.db")
    monkeypatch.setenv("SHOAL_LISTEN", "127.0.0.1:0")
    monkeypatch.setenv("SHOAL_SECRET", "environment-secret-0123456789")
    async with shoal.Node("env-node") as node:
        assert node.address is not None and node.address[0] == "127.0.0.1"
    assert (tmp_path / "env.db").exists()


async def test_name_held_by_a_live_node_is_refused(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/c.db"
    async with shoal.Node("same", store=url, secret="s" * 32):
        with pytest.raises(shoal.NameInUse):
            async with shoal.Node("same", store=url, secret="s" * 32):
                pass
    async with shoal.Node("same", store=url, secret="s" * 32):
        pass  # free again once the holder stopped


async def test_a_stopped_node_cannot_be_started_again(node: shoal.Node) -> None:
    await node.stop()
    with pytest.raises(shoal.ShoalError, match="used once"):
        await node.start()


def test_a_holder_is_dead_only_when_its_pid_is_gone_under_our_process_identity() -> None:
    import subprocess
    import sys

    from shoal.runtime.node_info import holder_is_dead, process_identity

    me = process_identity()
    assert me is not None  # Linux: boot id and pid namespace are readable
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid is gone (and not reused this soon)
    assert holder_is_dead({"os_pid": child.pid, "process": me})
    assert not holder_is_dead({"os_pid": os.getpid(), "process": me})  # ourselves
    assert not holder_is_dead({"os_pid": 1, "process": me})  # alive
    assert not holder_is_dead({"os_pid": child.pid, "process": "other-host/boot/ns"})
    assert not holder_is_dead({"os_pid": child.pid})  # no identity: may be alive
    assert not holder_is_dead({"os_pid": "12", "process": me})
    assert not holder_is_dead({"os_pid": -1, "process": me})


def test_a_killed_holder_not_yet_reaped_by_its_parent_is_dead() -> None:
    # A node killed by -9 whose parent has not waited for it yet is a zombie:
    # kill(pid, 0) still succeeds, but it will never renew its session, so a
    # same-name restart must not be refused as "held by a live node".
    import signal
    import subprocess
    import sys

    from shoal.runtime.node_info import holder_is_dead, process_identity

    me = process_identity()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not holder_is_dead({"os_pid": child.pid, "process": me})  # running
        os.kill(child.pid, signal.SIGKILL)
        # Wait for its exit without reaping it: it stays a zombie.
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert holder_is_dead({"os_pid": child.pid, "process": me})
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(("given", "missing"), [
    ({"tls_cert": "c.pem"}, "tls_key (or SHOAL_TLS_KEY), tls_ca (or SHOAL_TLS_CA)"),
    ({"tls_cert": "c.pem", "tls_key": "k.pem"}, "tls_ca (or SHOAL_TLS_CA)"),
    ({"tls_ca": "ca.pem"}, "tls_cert (or SHOAL_TLS_CERT), tls_key (or SHOAL_TLS_KEY)"),
])
async def test_partial_peer_tls_is_refused_naming_what_is_missing(
        given: dict[str, str], missing: str, tmp_path: Path) -> None:
    node = shoal.Node("t", store=f"sqlite://{tmp_path}/c.db", secret="x" * 16, **given)
    with pytest.raises(shoal.ConfigError) as info:
        await node.start()
    assert str(info.value).endswith("missing: " + missing)
    assert not node.running


def test_peer_tls_files_that_cannot_be_read_or_parsed_are_named(tmp_path: Path) -> None:
    from shoal.runtime.config import load_peer_tls

    assert load_peer_tls() is None
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(shoal.ConfigError, match=r"cannot read the TLS private key .*nope\.key"):
        load_peer_tls(garbage, tmp_path / "nope.key", garbage)
    with pytest.raises(shoal.ConfigError, match=r"peer TLS: certificate .*garbage\.pem"):
        load_peer_tls(garbage, garbage, garbage)
    with pytest.raises(shoal.ConfigError, match="tls_server_name is set but peer TLS is not"):
        load_peer_tls(server_name="localhost")


def test_secret_file_owned_by_another_user_is_refused(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret"
    path.write_text("a-long-enough-cluster-secret-0123")
    path.chmod(0o600)
    monkeypatch.setenv("SHOAL_SECRET_FILE", str(path))
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)   # nobody's file, mode 0600: root could read it
    else:
        monkeypatch.setattr(os, "geteuid", lambda: path.stat().st_uid + 1)
    with pytest.raises(shoal.ConfigError, match="owned by uid"):
        load_secret(None, "etcd://x")


@pytest.mark.parametrize("umask", [0o000, 0o277])
async def test_every_store_file_and_directory_is_private_whatever_the_umask(
        umask: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal.store.sqlite._wake import wake_dir_for

    monkeypatch.chdir(tmp_path)
    old = os.umask(umask)
    try:
        # The default: ./.shoal/cluster.db with a generated secret.
        async with shoal.Node("api-1") as node:
            await node.groups.join("workers", await node.spawn(shoal.GenServer))
            await node.groups.sync()
            store = tmp_path / ".shoal"
            wake = wake_dir_for((store / "cluster.db").absolute())
            paths = [store, *store.rglob("*"), wake, *wake.iterdir()]
            modes = {str(p): oct(p.stat().st_mode & 0o777) for p in paths}
            expected = {str(p): oct(0o700 if p.is_dir() else 0o600) for p in paths}
    finally:
        os.umask(old)
    assert modes == expected
    names = {p.name for p in paths}
    assert {"cluster.db", "cluster.db-wal", "cluster.db-shm", "secret",
            "cluster.db.locks"} <= names
    assert any(name.endswith(".sock") for name in names)


def test_the_generated_secret_appears_whole_or_not_at_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes starting together on a fresh directory must never read another's
    secret half written (an empty file was refused as too short)."""
    import secrets

    secret_file = tmp_path / "db" / "secret"
    visible_while_generating: list[bool] = []
    real_token_hex = secrets.token_hex

    def token_hex(nbytes: int | None = None) -> str:
        visible_while_generating.append(secret_file.exists())
        return real_token_hex(nbytes)

    monkeypatch.setattr(secrets, "token_hex", token_hex)
    first = load_secret(None, f"sqlite://{tmp_path}/db/cluster.db")
    assert not any(visible_while_generating)
    assert secret_file.read_bytes().strip() == first
    assert sorted(p.name for p in secret_file.parent.iterdir()) == ["secret"]  # no draft left
