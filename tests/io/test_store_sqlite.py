"""SqliteStore with real OS processes, real files and real failures.

A child Python process owns a session; the test kills, stops or races it by
the pid it started. Waits are on watch events with bounded deadlines.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from shoal.errors import NameInUse, StoreUnavailable
from shoal.store import Changes, Event, Put, Resync, SqliteStore, WatchItem
from shoal.store.sqlite._wake import wake_dir_for

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, sys
from shoal.store import Put, SqliteStore

async def main():
    path, name, ttl, nkeys = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    store = SqliteStore(path, probe_interval=0.05)
    sess = await store.open_session(name, b"child", ttl)
    rev = await sess.apply([Put(key=f"child/{i}", value=b"x") for i in range(nkeys)])
    watch = store.watch("", rev)
    await sess.apply([Put(key="ready/" + name, value=b"")])
    await anext(watch)  # the watch has bound this client's wake socket
    print("ready", rev, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        rev = await sess.apply([Put(key=line.decode().strip(), value=b"y")])
        print("put", rev, flush=True)
    await store.close()

asyncio.run(main())
"""


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(15):
            return (await self.proc.stdout.readline()).decode().strip()

    async def put(self, key: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(key.encode() + b"\n")
        await self.proc.stdin.drain()


async def start_child(db: Path, name: str = "child", ttl: float = 30.0, keys: int = 3) -> Child:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(db), name, str(ttl), str(keys),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    child = Child(proc)
    ready = await child.line()
    assert ready.startswith("ready"), ready
    return child


@pytest.fixture
async def children() -> AsyncIterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        if child.proc.returncode is None:
            os.kill(child.proc.pid, signal.SIGCONT)
            child.proc.kill()
            await child.proc.wait()


async def events_until(
    watch: AsyncIterator[WatchItem], done: Callable[[list[Event]], bool], deadline: float
) -> list[Event]:
    seen: list[Event] = []
    async with asyncio.timeout(deadline):
        while not done(seen):
            item = await anext(watch)
            assert isinstance(item, Changes)
            seen.extend(item.events)
    return seen


def child_gone(events: list[Event]) -> bool:
    return {"child/0", "child/1", "child/2", "nodes/child"} <= {
        e.key for e in events if e.kind == "delete"
    }


async def test_killed_owner_session_ends_on_probe_at_one_revision(
    tmp_path: Path, children: list[Child]
) -> None:
    db = tmp_path / "cluster.db"
    children.append(child := await start_child(db))
    async with SqliteStore(db, probe_interval=3600) as store:
        snap = await store.snapshot("")
        assert {"child/0", "child/1", "child/2", "nodes/child"} <= set(snap.entries)
        watch = store.watch("", snap.revision)
        child.proc.kill()  # SIGKILL to the pid this test started
        await child.proc.wait()
        await store.probe()
        assert not [k for k in (await store.snapshot("")).entries if "child" in k]
        deletes = await events_until(watch, child_gone, 5)
        assert len({e.revision for e in deletes}) == 1
        again = await store.open_session("child", b"parent", 5)
        assert not again.ended


async def test_killed_owner_session_ends_by_background_probe_without_calling_probe(
    tmp_path: Path, children: list[Child]
) -> None:
    db = tmp_path / "cluster.db"
    children.append(child := await start_child(db))
    async with SqliteStore(db, probe_interval=0.1) as store:
        watch = store.watch("", (await store.snapshot("")).revision)
        child.proc.kill()
        await child.proc.wait()
        started = time.monotonic()
        await events_until(watch, child_gone, 3)
        assert time.monotonic() - started < 2


async def test_sigstopped_owner_keeps_its_session_while_within_ttl(
    tmp_path: Path, children: list[Child]
) -> None:
    db = tmp_path / "cluster.db"
    children.append(child := await start_child(db, ttl=4.0))
    async with SqliteStore(db, probe_interval=0.05) as store:
        os.kill(child.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(10):  # ~1 s of probes, well within the TTL
                await store.probe()
                assert "nodes/child" in (await store.snapshot("nodes/")).entries
                await asyncio.sleep(0.1)
        finally:
            os.kill(child.proc.pid, signal.SIGCONT)
        await child.put("after/stop")
        assert (await child.line()).startswith("put")


async def test_sigstopped_owner_keeps_its_session_past_its_ttl_while_it_holds_its_lock(
    tmp_path: Path, children: list[Child]
) -> None:
    # The held lock proves the process exists: a hang longer than the TTL
    # removes nothing, the name stays taken, and the owner resumes as is.
    db = tmp_path / "cluster.db"
    ttl = 0.5
    children.append(child := await start_child(db, ttl=ttl))
    async with SqliteStore(db, probe_interval=0.05) as store:
        os.kill(child.proc.pid, signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            while time.monotonic() - stopped < 4 * ttl:  # the hang lasts 4 TTLs
                await store.probe()
                assert {"child/0", "child/1", "child/2", "nodes/child"} <= set(
                    (await store.snapshot("")).entries)
                await asyncio.sleep(0.05)  # pacing the probes through the hang
            with pytest.raises(NameInUse):
                await store.open_session("child", b"usurper", 5)
        finally:
            os.kill(child.proc.pid, signal.SIGCONT)
        await child.put("after/stop")
        assert (await child.line()).startswith("put")  # its session never ended


async def test_sigstopped_owner_session_expires_once_ttl_passes_if_its_lock_file_is_gone(
    tmp_path: Path, children: list[Child]
) -> None:
    db = tmp_path / "cluster.db"
    children.append(child := await start_child(db, ttl=1.0))
    async with SqliteStore(db, probe_interval=0.05) as store:
        watch = store.watch("", (await store.snapshot("")).revision)
        os.kill(child.proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        for lock in (tmp_path / "cluster.db.locks").iterdir():
            lock.unlink()  # nothing proves the owner lives any more
        deletes = await events_until(watch, child_gone, 5)
        waited = time.monotonic() - stopped
        assert 0.5 <= waited < 3, waited  # last keepalive was at most ttl/3 before the stop
        assert len({e.revision for e in deletes}) == 1


async def test_name_held_by_a_live_process_is_in_use_and_names_its_pid(
    tmp_path: Path, children: list[Child]
) -> None:
    db = tmp_path / "cluster.db"
    children.append(child := await start_child(db))
    async with SqliteStore(db) as store:
        with pytest.raises(NameInUse, match=f"pid {child.proc.pid}"):
            await store.open_session("child", b"", 5)


async def test_writes_of_another_process_wake_a_watcher_quickly(
    tmp_path: Path, children: list[Child]
) -> None:
    db = tmp_path / "cluster.db"
    children.append(child := await start_child(db))
    async with SqliteStore(db, poll_interval=5.0) as store:
        watch = store.watch("w/", (await store.snapshot("")).revision)
        latencies = []
        for i in range(30):
            sent = time.monotonic()
            await child.put(f"w/{i}")
            got = await events_until(watch, lambda evs, k=f"w/{i}": k in {e.key for e in evs}, 5)
            latencies.append(time.monotonic() - sent)
            assert [e.key for e in got] == [f"w/{i}"]
            assert (await child.line()).startswith("put")
        # With a 5 s fallback poll, only the wake socket explains a fast median.
        assert statistics.median(latencies) < 0.1, latencies


async def test_dead_watchers_wake_socket_is_removed_by_the_next_writer(
    tmp_path: Path, children: list[Child]
) -> None:
    db = tmp_path / "cluster.db"
    children.append(child := await start_child(db))
    wake = wake_dir_for(db.absolute())
    assert len(os.listdir(wake)) == 1
    child.proc.kill()
    await child.proc.wait()
    async with SqliteStore(db) as store:
        session = await store.open_session("parent", b"", 5)
        await session.apply([Put(key="k", value=b"v")])
        assert not wake.exists()  # its socket was the last: the directory went too


async def test_watcher_behind_the_kept_log_gets_resync(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "cluster.db", log_limit=10) as store:
        session = await store.open_session("n", b"", 5)
        for i in range(300):  # compaction runs every 256 revisions
            await session.apply([Put(key=f"k/{i % 7}", value=str(i).encode())])
        watch = store.watch("k/", 0)
        first = await anext(watch)
        assert isinstance(first, Resync)
        assert first.snapshot.entries == (await store.snapshot("k/")).entries


async def test_directory_that_cannot_be_created_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    db = blocker / "sub" / "cluster.db"
    store = SqliteStore(db)
    with pytest.raises(StoreUnavailable, match=re.escape(str(db))):
        await store.open_session("n", b"", 5)
    await store.close()


async def test_unwritable_directory_is_store_unavailable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        directory = Path("/proc/self/shoal")  # root ignores modes; procfs refuses anyway
    else:
        directory = tmp_path / "ro"
        directory.mkdir(mode=0o500)
    store = SqliteStore(directory / "cluster.db")
    with pytest.raises(StoreUnavailable, match=re.escape("cluster.db")):
        await store.snapshot("")
    await store.close()


async def test_garbage_in_the_database_file_is_store_unavailable(tmp_path: Path) -> None:
    db = tmp_path / "cluster.db"
    db.write_bytes(os.urandom(8192))
    async with asyncio.timeout(10):
        store = SqliteStore(db)
        with pytest.raises(StoreUnavailable, match=re.escape(str(db))) as caught:
            await store.snapshot("")
        assert "sqlite3" not in type(caught.value).__module__
        await store.close()


FULL_DISK_CHILD = r"""
import asyncio, resource, signal, sys
from shoal.errors import StoreUnavailable
from shoal.store import Put, SqliteStore

async def main():
    store = SqliteStore(sys.argv[1])
    sess = await store.open_session("n", b"", 30)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    try:
        for i in range(1000):
            await sess.apply([Put(key=f"k/{i}", value=b"x" * 65536)])
    except StoreUnavailable as exc:
        print("unavailable", exc)
    else:
        print("no error")

asyncio.run(main())
"""


async def test_full_disk_is_store_unavailable_naming_the_file(tmp_path: Path) -> None:
    db = tmp_path / "cluster.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FULL_DISK_CHILD, str(db), stdout=asyncio.subprocess.PIPE, env=env
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert out.decode().startswith(f"unavailable sqlite store {db}"), out


async def test_the_wake_directory_goes_with_its_last_socket(tmp_path: Path) -> None:
    import tempfile

    db = tmp_path / ("deep" * 25) / "cluster.db"  # too deep for a socket path beside it
    wake = wake_dir_for(db.absolute())
    assert wake.parent == Path(tempfile.gettempdir())

    async def watching(store: SqliteStore) -> AsyncIterator[WatchItem]:
        watch = store.watch("", 0)
        await anext(watch)  # the first item: this client's socket is bound by now
        return watch

    first, second = SqliteStore(db), SqliteStore(db)
    session = await first.open_session("a", b"", 5)
    watches = [await watching(first), await watching(second)]
    assert len(list(wake.iterdir())) == 2
    await second.close()
    assert len(list(wake.iterdir())) == 1
    await session.close()
    await first.close()
    assert not wake.exists()
    for watch in watches:
        await watch.aclose()  # type: ignore[attr-defined]
    # A new client makes the directory again.
    async with SqliteStore(db) as third:
        await third.open_session("b", b"", 5)
        watch = await watching(third)
        assert len(list(wake.iterdir())) == 1
    await watch.aclose()  # type: ignore[attr-defined]
    assert not wake.exists()
