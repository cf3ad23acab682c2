"""Store contract checks: watching one prefix among many (store Rule 3).

A node watches only the scopes it uses, one prefix each
(``scopes/<scope>/``, ``docs/protocol.md`` 8.2); these checks hold every
adapter to what that needs: a watch of a prefix carries every change under
it and nothing else, even of a prefix that begins with the same characters,
and one begun at the revision of that prefix's snapshot misses nothing
while other prefixes change.
"""

from __future__ import annotations

import asyncio

from shoal.store.base import Changes, Delete, Put
from shoal.testing._contract_support import StoreFactory


async def check_a_prefix_watch_carries_that_prefix_alone(factory: StoreFactory) -> None:
    """A watch of ``scopes/a/`` from its snapshot's revision yields every
    change under it, in order, and none under ``scopes/ab/`` or ``scopes/b/``."""
    async with factory() as h:
        sess = await h.store.open_session("node-a", b"", h.ttl)
        await sess.apply([Put(key="scopes/a/k0", value=b"0"),
                          Put(key="scopes/ab/k0", value=b"0")])
        start = await h.store.snapshot("scopes/a/")
        assert set(start.entries) == {"scopes/a/k0"}, start.entries
        expected: list[tuple[str, str]] = []
        for i in range(1, 20):
            await sess.apply([Put(key=f"scopes/ab/k{i}", value=b"x"),
                              Put(key=f"scopes/a/k{i}", value=b"y")])
            expected.append(("put", f"scopes/a/k{i}"))
            await sess.apply([Put(key=f"scopes/b/k{i}", value=b"z")])
        last = await sess.apply([Delete(key="scopes/a/k0"), Delete(key="scopes/ab/k0")])
        expected.append(("delete", "scopes/a/k0"))
        seen: list[tuple[str, str]] = []
        revisions: list[int] = []
        it = h.store.watch("scopes/a/", start.revision)
        try:
            async with asyncio.timeout(h.timeout):
                async for item in it:
                    assert isinstance(item, Changes), f"unexpected {item!r}"
                    seen += [(e.kind, e.key) for e in item.events]
                    revisions += [e.revision for e in item.events]
                    if item.revision >= last:
                        break
        finally:
            await it.aclose()  # type: ignore[attr-defined]
        assert seen == expected, seen
        assert revisions == sorted(revisions) and revisions[0] > start.revision
