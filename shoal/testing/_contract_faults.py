"""The store contract's failure checks: expiry, owner death, compaction,
slow watchers, closing clients (see ``store_contract.py``)."""

from __future__ import annotations

import asyncio

from shoal.errors import SessionEnded
from shoal.store.base import Delete, Put
from shoal.testing._contract_support import (
    StoreFactory,
    Unsupported,
    Watcher,
    bounded,
    expect,
    pass_time,
    watching,
)
from shoal.testing.view import WatchView

__all__ = [
    "check_closing_a_client_ends_its_sessions_and_watches",
    "check_compacted_watch_resyncs_and_continues",
    "check_owner_death_ends_session_on_probe",
    "check_slow_watcher_converges",
    "check_ttl_expiry_ends_session",
]


async def check_ttl_expiry_ends_session(factory: StoreFactory) -> None:
    """A kept-alive session outlives its TTL; once its owner hangs, it expires."""
    async with factory() as h:
        if h.suspend is None:
            raise Unsupported("harness.suspend")
        sess = await h.store.open_session("node-t", b"", h.ttl)
        await sess.apply([Put(key="t/1", value=b"x")])
        async with watching(h.store, "", h) as w:
            await pass_time(h, 3 * h.ttl)
            assert not sess.ended and "t/1" in (await h.store.snapshot("t/")).entries
            await h.suspend(sess)
            if h.advance is not None:
                await h.advance(2 * h.ttl)
            await w.until(lambda: "t/1" not in w.view and "nodes/node-t" not in w.view, "expiry")
            assert await bounded(h, sess.wait_ended()) == "expired"
        await expect(SessionEnded, sess.apply([Put(key="t/2", value=b"y")]))
        again = await h.store.open_session("node-t", b"", h.ttl)
        assert again.id != sess.id


async def check_owner_death_ends_session_on_probe(factory: StoreFactory) -> None:
    """probe() ends at once, at one revision, a session whose owner died."""
    async with factory() as h, h.another_client() as other:
        if h.kill_owner is None:
            raise Unsupported("harness.kill_owner")
        sess = await other.open_session("node-d", b"", h.ttl * 100)
        await sess.apply([Put(key=f"d/{i}", value=b"x") for i in range(3)])
        async with watching(h.store, "", h) as w:
            await h.kill_owner(sess)
            await h.store.probe()
            gone = (await h.store.snapshot("")).entries
            assert not [k for k in gone if k.startswith(("d/", "nodes/node-d"))], "probe was lazy"
            await w.until(lambda: not [k for k in w.view if k.startswith("d/")], "deletes")
            assert len({e.revision for e in w.events if e.kind == "delete"}) == 1
        await h.store.open_session("node-d", b"", h.ttl)


async def check_compacted_watch_resyncs_and_continues(factory: StoreFactory) -> None:
    """A watch from a forgotten revision starts with a Resync, then continues."""
    async with factory() as h:
        if h.compact is None:
            raise Unsupported("harness.compact")
        sess = await h.store.open_session("node-a", b"", h.ttl)
        r0 = (await h.store.snapshot("r/")).revision
        for i in range(5):
            await sess.apply([Put(key=f"r/{i}", value=b"x")])
        await sess.apply([Delete(key="r/0")])
        await h.compact()
        w = Watcher(h.store, "r/", r0, h.timeout)
        try:
            await w.until(lambda: w.resyncs > 0, "a Resync")
            assert set(w.view) == {"r/1", "r/2", "r/3", "r/4"} and not w.events
            r = await sess.apply([Put(key="r/9", value=b"y")])
            await w.reach(r)
            assert [e.key for e in w.events] == ["r/9"]
            assert w.view == dict((await h.store.snapshot("r/")).entries)
        finally:
            await w.aclose()


async def check_slow_watcher_converges(factory: StoreFactory) -> None:
    """A watcher that stops reading while much changes still ends at the true state."""
    async with factory() as h:
        sess = await h.store.open_session("node-a", b"", h.ttl)
        start = await h.store.snapshot("s/")
        w = WatchView.of(start)
        it = h.store.watch("s/", start.revision)
        try:
            await sess.apply([Put(key="s/first", value=b"")])
            w.apply(await bounded(h, anext(it)))
            for i in range(200):
                await sess.apply([Put(key=f"s/{i % 17}", value=str(i).encode())])
            if h.compact is not None:
                await h.compact()
            final = await h.store.snapshot("s/")
            async with asyncio.timeout(h.timeout):
                while w.position < final.revision:
                    w.apply(await anext(it))
            assert w.view == dict(final.entries)
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()


async def check_closing_a_client_ends_its_sessions_and_watches(factory: StoreFactory) -> None:
    """Closing a client ends its sessions (seen by others) and finishes its watches."""
    async with factory() as h, h.another_client() as other:
        sess = await other.open_session("node-o", b"", h.ttl)
        await sess.apply([Put(key="o/1", value=b"x")])
        theirs = Watcher(other, "", 0, h.timeout)
        async with watching(h.store, "", h) as w:
            await other.close()
            await w.until(lambda: "o/1" not in w.view and "nodes/node-o" not in w.view, "deletes")
            assert await bounded(h, sess.wait_ended()) == "closed"
            await theirs.until(lambda: theirs.finished, "the closed client's watch to end")
        await theirs.aclose()
