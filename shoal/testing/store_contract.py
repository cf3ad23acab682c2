"""The one contract suite every store adapter passes.

Owns the executable form of :mod:`shoal.store.base`'s rules. An adapter's
test module supplies a *factory*: a callable returning an async context
manager that yields a :class:`StoreHarness` around a fresh, empty, isolated
store. Each check is its own coroutine function taking that factory, so a
pytest module parametrizes one test per check per adapter (``CHECKS``);
:func:`check_store` runs them all.

Rules:

- Rule 1: checks wait on watch events or session ends with a bound
  (``harness.timeout``), never sleep to synchronise. Only the "nothing
  happens" parts let time pass, through ``harness.advance`` when the adapter
  has an injectable clock.
- Rule 2: a check that needs a hook the harness lacks raises
  :class:`Unsupported` (the pytest module turns it into a skip).
- Rule 3: every watch item is checked as it arrives (revisions rise, no
  event at or below the watcher's position, ``Changes.revision`` is that of
  its last event), and watchers keep a view that must equal a snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from shoal.errors import BadArgument, NameInUse, SessionEnded
from shoal.store.base import Delete, Put, Session, Store
from shoal.testing._contract_create import (
    check_create_fails_on_an_existing_key_and_applies_nothing,
    check_create_race_has_exactly_one_winner,
)
from shoal.testing._contract_faults import (
    check_closing_a_client_ends_its_sessions_and_watches,
    check_compacted_watch_resyncs_and_continues,
    check_owner_death_ends_session_on_probe,
    check_slow_watcher_converges,
    check_ttl_expiry_ends_session,
)
from shoal.testing._contract_prefixes import check_a_prefix_watch_carries_that_prefix_alone
from shoal.testing._contract_records import (
    check_concurrent_appends_all_land_with_distinct_seqs,
    check_record_bad_arguments_name_the_argument,
    check_records_keep_only_the_newest,
    check_records_outlive_sessions_and_clients,
)
from shoal.testing._contract_support import (
    StoreFactory,
    StoreHarness,
    Unsupported,
    Watcher,
    bounded,
    expect,
    watching,
)
from shoal.testing.clock import ManualClock

__all__ = [
    "CHECKS",
    "ManualClock",
    "StoreFactory",
    "StoreHarness",
    "Unsupported",
    "check_bad_arguments_name_the_argument",
    "check_batch_is_atomic_at_one_revision",
    "check_closing_a_client_ends_its_sessions_and_watches",
    "check_compacted_watch_resyncs_and_continues",
    "check_concurrent_appends_all_land_with_distinct_seqs",
    "check_concurrent_writers_seen_in_one_order",
    "check_create_fails_on_an_existing_key_and_applies_nothing",
    "check_create_race_has_exactly_one_winner",
    "check_name_in_use_until_holder_ends",
    "check_open_and_close_session",
    "check_owner_death_ends_session_on_probe",
    "check_record_bad_arguments_name_the_argument",
    "check_records_keep_only_the_newest",
    "check_records_outlive_sessions_and_clients",
    "check_session_end_deletes_all_keys_at_one_revision",
    "check_slow_watcher_converges",
    "check_snapshot_is_consistent",
    "check_store",
    "check_ttl_expiry_ends_session",
    "check_watch_replays_from_revision_in_order",
    "check_write_after_end_raises_session_ended",
]

async def check_open_and_close_session(factory: StoreFactory) -> None:
    """A session stores its info under nodes/<name>; close removes it; ids unique."""
    async with factory() as h:
        s = h.store
        assert isinstance(s, Store)
        before = await s.snapshot("")
        ids = set()
        for _ in range(3):
            sess = await s.open_session("node-a", b"info-a", h.ttl)
            assert isinstance(sess, Session) and sess.name == "node-a" and not sess.ended
            ids.add(sess.id)
            snap = await s.snapshot("nodes/")
            entry = snap.entries["nodes/node-a"]
            assert (entry.value, entry.session) == (b"info-a", sess.id)
            assert before.revision < entry.revision <= snap.revision
            await sess.close()
            assert sess.ended and await bounded(h, sess.wait_ended()) == "closed"
            assert "nodes/node-a" not in (await s.snapshot("nodes/")).entries
            await sess.close()
        assert len(ids) == 3, "session ids reused"


async def check_name_in_use_until_holder_ends(factory: StoreFactory) -> None:
    """A live name cannot be taken by any client; it is free once the holder ends."""
    async with factory() as h, h.another_client() as other:
        a = await h.store.open_session("node-a", b"1", h.ttl)
        for client in (h.store, other):
            err = await expect(NameInUse, client.open_session("node-a", b"2", h.ttl))
            assert "node-a" in str(err)
        b = await other.open_session("node-b", b"3", h.ttl)
        await a.close()
        again = await other.open_session("node-a", b"4", h.ttl)
        assert again.id not in (a.id, b.id)
        entry = (await h.store.snapshot("nodes/")).entries["nodes/node-a"]
        assert (entry.value, entry.session) == (b"4", again.id)


async def check_batch_is_atomic_at_one_revision(factory: StoreFactory) -> None:
    """One apply is one revision, seen alike by snapshot and watch."""
    async with factory() as h:
        sess = await h.store.open_session("node-a", b"", h.ttl)
        async with watching(h.store, "b/", h) as w:
            r1 = await sess.apply(
                [Put(key="b/1", value=b"x"), Put(key="b/2", value=b"y"), Put(key="b/3", value=b"z")]
            )
            r2 = await sess.apply([Put(key="b/1", value=b"x2"), Delete(key="b/2")])
            assert isinstance(r1, int) and r2 > r1
            await w.reach(r2)
            got = [(e.kind, e.key, e.value, e.revision) for e in w.events]
            assert got == [
                ("put", "b/1", b"x", r1),
                ("put", "b/2", b"y", r1),
                ("put", "b/3", b"z", r1),
                ("put", "b/1", b"x2", r2),
                ("delete", "b/2", None, r2),
            ], got
            # Puts name their session; a delete names only its key (base Rule 3b).
            assert [e.session for e in w.events] == [sess.id] * 4 + [None]
            snap = await h.store.snapshot("b/")
            assert {k: (e.value, e.revision) for k, e in snap.entries.items()} == {
                "b/1": (b"x2", r2),
                "b/3": (b"z", r1),
            }
            assert w.view == dict(snap.entries)
            r3 = await sess.apply([Delete(key="b/absent")])
            assert r3 >= r2


async def check_snapshot_is_consistent(factory: StoreFactory) -> None:
    """Snapshots filter by prefix and never show half a batch; watch resumes them."""
    async with factory() as h:
        sess = await h.store.open_session("node-a", b"", h.ttl)
        await sess.apply([Put(key="x/1", value=b"1"), Put(key="y/1", value=b"2")])
        snap = await h.store.snapshot("x/")
        assert set(snap.entries) == {"x/1"}
        assert all(e.revision <= snap.revision for e in snap.entries.values())
        assert not (await h.store.snapshot("zz/")).entries
        start = await h.store.snapshot("p/")
        w = Watcher(h.store, "p/", start.revision, h.timeout, dict(start.entries))
        try:

            async def writer() -> None:
                for i in range(30):
                    await sess.apply(
                        [Put(key=f"p/c/{i}", value=b"c"), Put(key=f"p/d/{i}", value=b"d")]
                    )
                    await asyncio.sleep(0)

            task = asyncio.get_running_loop().create_task(writer())
            while not task.done():
                s = await h.store.snapshot("p/")
                cs = {k[4:] for k in s.entries if k.startswith("p/c/")}
                ds = {k[4:] for k in s.entries if k.startswith("p/d/")}
                assert cs == ds, f"half a batch visible at {s.revision}"
                await asyncio.sleep(0)  # an in-memory snapshot need not yield
            await task
            final = await h.store.snapshot("p/")
            await w.reach(final.revision)
            assert w.view == dict(final.entries)
        finally:
            await w.aclose()


async def check_watch_replays_from_revision_in_order(factory: StoreFactory) -> None:
    """A watch from revision R yields every later change, also those made before it began."""
    async with factory() as h:
        sess = await h.store.open_session("node-a", b"", h.ttl)
        r0 = (await h.store.snapshot("w/")).revision
        r1 = await sess.apply([Put(key="w/1", value=b"a")])
        await sess.apply([Put(key="other/1", value=b"b")])
        r2 = await sess.apply([Put(key="w/2", value=b"c")])
        r3 = await sess.apply([Delete(key="w/1")])
        plan: list[tuple[int, list[int]]] = [(r0, [r1, r2, r3]), (r1, [r2, r3]), (r3, [])]
        watchers = [(Watcher(h.store, "w/", start, h.timeout), want) for start, want in plan]
        try:
            r4 = await sess.apply([Put(key="w/last", value=b"d")])
            for w, want in watchers:
                await w.reach(r4)
                assert [e.revision for e in w.events] == [*want, r4], (want, w.events)
                assert all(e.key.startswith("w/") for e in w.events)
        finally:
            for w, _ in watchers:
                await w.aclose()


async def check_concurrent_writers_seen_in_one_order(factory: StoreFactory) -> None:
    """Sessions on two clients write at once; every watcher sees one identical order."""
    async with factory() as h, h.another_client() as other:
        clients = [h.store, other]
        sessions = [await clients[i % 2].open_session(f"w{i}", b"", h.ttl) for i in range(6)]
        r0 = (await h.store.snapshot("c/")).revision
        watchers = [Watcher(clients[i % 2], "c/", r0, h.timeout) for i in range(4)]
        try:

            async def write(i: int, sess: Session) -> list[int]:
                revs = []
                for j in range(15):
                    revs.append(
                        await sess.apply(
                            [
                                Put(key=f"c/{i}/{j}", value=b"v"),
                                Put(key=f"c/{i}/last", value=str(j).encode()),
                            ]
                        )
                    )
                    await asyncio.sleep(0)
                return revs

            results = await asyncio.gather(*(write(i, s) for i, s in enumerate(sessions)))
            revs = sorted(r for rs in results for r in rs)
            assert len(set(revs)) == len(revs), "two batches share a revision"
            for w in watchers:
                await w.reach(revs[-1])
            seqs = [[(e.revision, e.kind, e.key, e.value) for e in w.events] for w in watchers]
            assert all(s == seqs[0] for s in seqs), "watchers disagree on the order"
            assert len(seqs[0]) == 2 * len(revs) and len(set(seqs[0])) == len(seqs[0])
            assert sorted({r for r, *_ in seqs[0]}) == revs
            final = await h.store.snapshot("c/")
            assert all(w.view == dict(final.entries) for w in watchers)
        finally:
            for w in watchers:
                await w.aclose()


async def check_session_end_deletes_all_keys_at_one_revision(factory: StoreFactory) -> None:
    """Closing a session deletes all its keys, and only its keys, at one revision."""
    async with factory() as h:
        a = await h.store.open_session("node-a", b"", h.ttl)
        b = await h.store.open_session("node-b", b"", h.ttl)
        await a.apply([Put(key=f"k/a/{i}", value=b"a") for i in range(5)])
        await a.apply([Put(key="k/shared", value=b"a")])
        await b.apply([Put(key="k/b/1", value=b"b"), Put(key="k/shared", value=b"b")])
        async with watching(h.store, "", h) as w:
            owned = {k for k, e in w.view.items() if e.session == a.id}
            assert len(owned) == 6 and "k/shared" not in owned  # b took k/shared over
            await a.close()
            await w.until(lambda: not owned & set(w.view), "a's keys to go")
            deletes = [e for e in w.events if e.kind == "delete"]
            assert {e.key for e in deletes} == owned
            assert len({e.revision for e in deletes}) == 1, "session end split over revisions"
            assert all(e.session is None for e in deletes), "a delete named a session"
            snap = await h.store.snapshot("")
            assert {"k/b/1", "k/shared", "nodes/node-b"} <= set(snap.entries)


async def check_write_after_end_raises_session_ended(factory: StoreFactory) -> None:
    """Writes under an ended session raise SessionEnded and change nothing."""
    async with factory() as h:
        sess = await h.store.open_session("node-a", b"", h.ttl)
        await sess.close()
        before = await h.store.snapshot("")
        await expect(SessionEnded, sess.apply([Put(key="late", value=b"x")]))
        after = await h.store.snapshot("")
        assert after.entries == before.entries


async def check_bad_arguments_name_the_argument(factory: StoreFactory) -> None:
    """Malformed arguments raise BadArgument naming the argument; nothing happens."""
    async with factory() as h:
        s = h.store
        one: Any = 1
        none: Any = None
        text: Any = "s"
        opens: list[tuple[Any, Any, Any, str]] = [
            ("", b"", 1.0, "name"),
            ("a/b", b"", 1.0, "name"),
            (7, b"", 1.0, "name"),
            ("ok", "text", 1.0, "info"),
            ("ok", b"", 0, "ttl"),
            ("ok", b"", -1.0, "ttl"),
            ("ok", b"", float("nan"), "ttl"),
            ("ok", b"", "1", "ttl"),
            ("ok", b"", True, "ttl"),
        ]
        for name, info, ttl, arg in opens:
            err = await expect(BadArgument, s.open_session(name, info, ttl))
            assert isinstance(err, BadArgument) and err.argument == arg, (name, info, ttl, err)
        assert "nodes/ok" not in (await s.snapshot("")).entries
        sess = await s.open_session("ok", b"", h.ttl)
        batches: list[tuple[Any, str]] = [
            ([Put(key=one, value=b"")], "key"),
            ([Put(key="", value=b"")], "key"),
            ([Put(key="k", value=text)], "value"),
            ([Delete(key=none)], "key"),
            (["k"], "ops"),
            ("k", "ops"),
            ([Put(key="k", value=b""), Delete(key="k")], "ops"),
        ]
        for ops, arg in batches:
            err = await expect(BadArgument, sess.apply(ops))
            assert isinstance(err, BadArgument) and err.argument == arg, (ops, err)
        err = await expect(BadArgument, s.snapshot(one))
        assert isinstance(err, BadArgument) and err.argument == "prefix"
        for prefix, rev, arg in ((one, 0, "prefix"), ("", -1, "revision"), ("", "0", "revision")):

            async def first(p: Any = prefix, r: Any = rev) -> None:
                it = s.watch(p, r)
                await anext(it)

            err = await expect(BadArgument, first())
            assert isinstance(err, BadArgument) and err.argument == arg, err
        assert not [k for k in (await s.snapshot("")).entries if k != "nodes/ok"]



CHECKS: tuple[Callable[[StoreFactory], Awaitable[None]], ...] = (
    check_open_and_close_session,
    check_name_in_use_until_holder_ends,
    check_batch_is_atomic_at_one_revision,
    check_snapshot_is_consistent,
    check_watch_replays_from_revision_in_order,
    check_a_prefix_watch_carries_that_prefix_alone,
    check_concurrent_writers_seen_in_one_order,
    check_session_end_deletes_all_keys_at_one_revision,
    check_write_after_end_raises_session_ended,
    check_bad_arguments_name_the_argument,
    check_create_fails_on_an_existing_key_and_applies_nothing,
    check_create_race_has_exactly_one_winner,
    check_ttl_expiry_ends_session,
    check_owner_death_ends_session_on_probe,
    check_compacted_watch_resyncs_and_continues,
    check_slow_watcher_converges,
    check_closing_a_client_ends_its_sessions_and_watches,
    check_records_outlive_sessions_and_clients,
    check_records_keep_only_the_newest,
    check_concurrent_appends_all_land_with_distinct_seqs,
    check_record_bad_arguments_name_the_argument,
)
"""Every check, in a stable order, for ``pytest.mark.parametrize``."""


async def check_store(factory: StoreFactory) -> list[str]:
    """Run every contract check against an adapter.

    Args:
        factory: returns an async context manager yielding a fresh
            :class:`StoreHarness`; called once per check.

    Returns:
        The names of the checks skipped because the harness lacks a hook.

    Raises:
        AssertionError: the adapter breaks the contract (the message names the check).
    """
    skipped = []
    for check in CHECKS:
        try:
            await check(factory)
        except Unsupported:
            skipped.append(check.__name__)
        except (AssertionError, TimeoutError, EOFError) as exc:
            raise AssertionError(f"{check.__name__}: {exc}") from exc
    return skipped
