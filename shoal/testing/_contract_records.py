"""Contract checks of durable records (the store contract's Rule 7).

Owns the checks that every adapter keeps records apart from session-owned
keys: bound to no session, seen by every client, newest first, bounded by
``keep``, invisible to snapshots and watches, and validated like the rest
of the API. ``store_contract.CHECKS`` lists them with the others.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.errors import BadArgument
from shoal.store.base import Put, Store
from shoal.testing._contract_support import StoreFactory, bounded, expect, watching

__all__ = [
    "check_concurrent_appends_all_land_with_distinct_seqs",
    "check_record_bad_arguments_name_the_argument",
    "check_records_keep_only_the_newest",
    "check_records_outlive_sessions_and_clients",
]


async def check_records_outlive_sessions_and_clients(factory: StoreFactory) -> None:
    """Records need no session, survive the end of the writer's session and
    client, are read newest first by another client, per kind, and never
    appear in snapshots or watches."""
    async with factory() as h:
        before = await h.store.snapshot("")
        async with watching(h.store, "", h) as w:
            async with h.another_client() as writer:
                session = await writer.open_session("writer", b"", h.ttl)
                first = await writer.append_record("audit", b'{"n": 1}')
                second = await writer.append_record("audit", b'{"n": 2}')
                other = await writer.append_record("other", b"x")
                assert first < second, (first, second)
                await session.close()
            rev = await (await h.store.open_session("probe", b"", h.ttl)).apply(
                [Put(key="after", value=b"v")])
            await w.reach(rev)
            shown = [e.key for e in w.events]
            assert all(not k.startswith("_") and "record" not in k for k in shown), shown
        records = await h.store.records("audit", 10)
        assert [(r.kind, r.seq, r.value) for r in records] == [
            ("audit", second, b'{"n": 2}'), ("audit", first, b'{"n": 1}')], records
        assert [r.seq for r in await h.store.records("audit", 1)] == [second]
        assert [(r.seq, r.value) for r in await h.store.records("other", 5)] == [(other, b"x")]
        assert await h.store.records("none", 5) == []
        after = await h.store.snapshot("")
        assert set(after.entries) == set(before.entries) | {"nodes/probe", "after"}, after


async def check_records_keep_only_the_newest(factory: StoreFactory) -> None:
    """An append drops all but the newest ``keep`` records of its kind (the
    retention bound), and only of its kind."""
    async with factory() as h:
        kept_apart = await h.store.append_record("other", b"o")
        seqs = [await h.store.append_record("audit", str(i).encode(), keep=3)
                for i in range(7)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 7, seqs
        records = await h.store.records("audit", 100)
        assert [(r.seq, r.value) for r in records] == [
            (seqs[6], b"6"), (seqs[5], b"5"), (seqs[4], b"4")], records
        async with h.another_client() as other:
            assert [r.seq for r in await other.records("audit", 100)] == seqs[:3:-1][:3]
            assert [r.seq for r in await other.records("other", 100)] == [kept_apart]


async def check_concurrent_appends_all_land_with_distinct_seqs(factory: StoreFactory) -> None:
    """Two clients appending at once: every record lands once, each with its
    own seq (etcd: the losing transaction retries on the counter)."""
    async with factory() as h, h.another_client() as other:
        async def appends(store: Store, tag: str) -> list[int]:
            return [await store.append_record("audit", f"{tag}{i}".encode()) for i in range(8)]

        mine, theirs = await bounded(h, asyncio.gather(appends(h.store, "a"),
                                                       appends(other, "b")))
        assert len(set(mine) | set(theirs)) == 16, (mine, theirs)
        records = await h.store.records("audit", 100)
        assert sorted(r.value for r in records) == sorted(
            [f"a{i}".encode() for i in range(8)] + [f"b{i}".encode() for i in range(8)])
        assert [r.seq for r in records] == sorted(mine + theirs, reverse=True)


async def check_record_bad_arguments_name_the_argument(factory: StoreFactory) -> None:
    """Malformed record arguments raise BadArgument naming the argument;
    nothing is stored."""
    async with factory() as h:
        s = h.store
        one: Any = 1
        appends: list[tuple[Any, Any, Any, str]] = [
            ("", b"", 5, "kind"),
            ("a/b", b"", 5, "kind"),
            (one, b"", 5, "kind"),
            ("k" * 65, b"", 5, "kind"),
            ("audit", "text", 5, "value"),
            ("audit", b"x" * (256 * 1024 + 1), 5, "value"),
            ("audit", b"", 0, "keep"),
            ("audit", b"", True, "keep"),
            ("audit", b"", "3", "keep"),
        ]
        for kind, value, keep, arg in appends:
            err = await expect(BadArgument, s.append_record(kind, value, keep=keep))
            assert isinstance(err, BadArgument) and err.argument == arg, (kind, keep, err)
        reads: list[tuple[Any, Any, str]] = [("", 1, "kind"), ("audit", 0, "limit"),
                                             ("audit", None, "limit")]
        for kind, limit, arg in reads:
            err = await expect(BadArgument, s.records(kind, limit))
            assert isinstance(err, BadArgument) and err.argument == arg, (kind, limit, err)
        assert await s.records("audit", 10) == []
