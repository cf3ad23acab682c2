"""The store contract's create-if-absent checks (``base.py`` Rule 6; see
``store_contract.py``): what cluster-wide registered names rely on."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.errors import BadArgument, KeyExists
from shoal.store.base import Create, Delete, Put
from shoal.testing._contract_support import StoreFactory, bounded, expect, watching

__all__ = [
    "check_create_fails_on_an_existing_key_and_applies_nothing",
    "check_create_race_has_exactly_one_winner",
]

RACE_ROUNDS = 20


async def check_create_fails_on_an_existing_key_and_applies_nothing(
        factory: StoreFactory) -> None:
    """A Create writes an absent key; on a present one (whoever owns it) the
    whole batch raises KeyExists naming the key, its value and owner session,
    and nothing of it is applied; the key is free again once deleted or once
    its session ended."""
    async with factory() as h, h.another_client() as other:
        a = await h.store.open_session("node-a", b"", h.ttl)
        b = await other.open_session("node-b", b"", h.ttl)
        async with watching(h.store, "names/", h) as w:
            r1 = await a.apply([Create(key="names/x", value=b"a1")])
            await w.reach(r1)
            assert [(e.kind, e.key, e.value, e.session) for e in w.events] == [
                ("put", "names/x", b"a1", a.id)]
            before = await h.store.snapshot("")
            for sess in (b, a):  # another session's create, and the owner's own
                err = await expect(KeyExists, sess.apply(
                    [Put(key="names/other", value=b"b"),
                     Create(key="names/x", value=b"b1")]))
                assert isinstance(err, KeyExists)
                assert (err.key, err.value, err.session) == ("names/x", b"a1", a.id), err
                assert "names/x" in str(err)
            assert (await h.store.snapshot("")).entries == before.entries
            # A Put still overwrites: Create alone is create-if-absent.
            await a.apply([Delete(key="names/x")])
            r2 = await b.apply([Create(key="names/x", value=b"b1")])
            entry = (await h.store.snapshot("names/")).entries["names/x"]
            assert (entry.value, entry.session, entry.revision) == (b"b1", b.id, r2)
            await b.close()
            r3 = await a.apply([Create(key="names/x", value=b"a2")])
            await w.reach(r3)
            entry = (await h.store.snapshot("names/")).entries["names/x"]
            assert (entry.value, entry.session) == (b"a2", a.id)
            assert w.view == dict((await h.store.snapshot("names/")).entries)
        bad: Any = "text"
        err = await expect(BadArgument, a.apply([Create(key="names/y", value=bad)]))
        assert isinstance(err, BadArgument) and err.argument == "value"


async def check_create_race_has_exactly_one_winner(factory: StoreFactory) -> None:
    """Two sessions of two clients creating one key at once: exactly one
    wins, the other gets KeyExists naming the winner's session and value."""
    async with factory() as h, h.another_client() as other:
        a = await h.store.open_session("node-a", b"", h.ttl)
        b = await other.open_session("node-b", b"", h.ttl)
        winners = {a.id: 0, b.id: 0}
        for n in range(RACE_ROUNDS):
            key = f"names/race-{n}"
            results = await bounded(h, asyncio.gather(
                a.apply([Create(key=key, value=a.id.encode())]),
                b.apply([Create(key=key, value=b.id.encode())]),
                return_exceptions=True))
            won = [s for s, r in zip((a, b), results, strict=True) if isinstance(r, int)]
            lost = [r for r in results if not isinstance(r, int)]
            assert len(won) == 1 and len(lost) == 1, results
            assert isinstance(lost[0], KeyExists), lost[0]
            assert (lost[0].session, lost[0].value) == (won[0].id, won[0].id.encode())
            entry = (await h.store.snapshot(key)).entries[key]
            assert entry.session == won[0].id
            winners[won[0].id] += 1
        assert sum(winners.values()) == RACE_ROUNDS
