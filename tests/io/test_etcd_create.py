"""etcd's create-if-absent when a transaction's answer is lost.

``call_endpoints`` retries an attempt whose answer never came, though etcd
may have applied it. A retried ``Create`` then finds its key: written by its
own first attempt (our lease, our value) it counts as done; anyone else's
key is still ``KeyExists``. The tests lose the first answer on purpose by
running the real transaction twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from shoal.errors import KeyExists
from shoal.store.base import Create, Put
from shoal.store.etcd import EtcdStore
from shoal.testing.etcd_server import EtcdCluster, start_etcd


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with start_etcd() as cluster:
        yield cluster


def lose_first_answer(store: EtcdStore) -> None:
    """Make each apply run twice, as a retry after a lost answer does."""
    real = store.call_endpoints

    async def twice(what: str, run: Callable[..., Awaitable[Any]], *,
                    budget: float | None = None) -> Any:
        if what == "apply":
            await real(what, run, budget=budget)  # applied; its answer is "lost"
        return await real(what, run, budget=budget)

    store.call_endpoints = twice  # type: ignore[method-assign]


async def test_a_retried_create_that_finds_its_own_write_succeeds(etcd: EtcdCluster) -> None:
    store = EtcdStore(etcd.endpoints, cluster=f"t-{uuid.uuid4().hex[:12]}")
    try:
        session = await store.open_session("node-a", b"", 5.0)
        lose_first_answer(store)
        revision = await session.apply([Create(key="names/x", value=b"mine")])
        entry = (await store.snapshot("names/")).entries["names/x"]
        assert (entry.value, entry.session) == (b"mine", session.id)
        assert revision >= entry.revision
    finally:
        await store.close()


async def test_a_retried_create_still_loses_to_another_sessions_key(
        etcd: EtcdCluster) -> None:
    store = EtcdStore(etcd.endpoints, cluster=f"t-{uuid.uuid4().hex[:12]}")
    try:
        holder = await store.open_session("node-a", b"", 5.0)
        await holder.apply([Put(key="names/x", value=b"theirs")])
        late = await store.open_session("node-b", b"", 5.0)
        lose_first_answer(store)
        with pytest.raises(KeyExists) as err:
            await late.apply([Create(key="names/x", value=b"mine")])
        assert (err.value.value, err.value.session) == (b"theirs", holder.id)
        # Our own key with another value is not "our first attempt" either.
        await late.apply([Put(key="names/y", value=b"old")])
        with pytest.raises(KeyExists):
            await late.apply([Create(key="names/y", value=b"new")])
        assert not late.ended
    finally:
        await store.close()
