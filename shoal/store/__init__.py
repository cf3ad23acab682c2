"""The store layer: where cluster membership lives.

Owns the public face of ``shoal.store``: the contract types of
:mod:`shoal.store.base`, the adapters, and :func:`open_store`, which maps a
store URL to an adapter. The etcd adapter is imported only when an
``etcd://`` URL asks for it, so its client library is needed only then.

URL forms (Rule 1: anything else is a BadArgument naming them):

- ``None`` or ``""``: SQLite at ``./.shoal/cluster.db`` (the default).
- ``memory://``: a fresh MemoryStore (one process only).
- ``sqlite:///abs/path.db`` or ``sqlite://relative/path.db``: SQLite there.
- ``etcd://host:port[,host:port...]``: etcd (``EtcdStore.from_url``).

:func:`read_snapshot` and :func:`read_records` are the read-only way in, for
tools that only look: they never create a store, and open SQLite read-only
(``sqlite._readonly``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from shoal.errors import BadArgument
from shoal.store._memory import MemorySession, MemoryStore
from shoal.store._validate import check_count, check_record
from shoal.store.base import (
    Changes,
    Create,
    Delete,
    Entry,
    Event,
    Op,
    Put,
    Record,
    Resync,
    Session,
    Snapshot,
    Store,
    WatchItem,
)
from shoal.store.sqlite import DEFAULT_SQLITE_PATH, SqliteSession, SqliteStore
from shoal.store.sqlite._readonly import read_only_records, read_only_snapshot

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "URL_FORMS",
    "Changes",
    "Create",
    "Delete",
    "Entry",
    "Event",
    "MemorySession",
    "MemoryStore",
    "Op",
    "Put",
    "Record",
    "Resync",
    "Session",
    "Snapshot",
    "SqliteSession",
    "SqliteStore",
    "Store",
    "WatchItem",
    "open_store",
    "read_records",
    "read_snapshot",
]

URL_FORMS = (
    "None or '' (sqlite at ./.shoal/cluster.db), 'memory://', 'sqlite:///abs/path', "
    "'sqlite://relative/path' or 'etcd://host:port[,host:port...]'"
)
"""The accepted store URL forms, as error messages name them."""


def _sqlite_path(url: str) -> str:
    path = url.removeprefix("sqlite://")
    if not path or path == "/" or "?" in path or "#" in path:
        raise BadArgument("url", url, URL_FORMS)
    return path


def open_store(url: str | None = None, *, cluster: str | None = None) -> Store:
    """Build the store a URL names. Does no IO: errors reaching the store
    surface from its first operation as StoreUnavailable.

    Args:
        url: see the module docstring for the forms.
        cluster: the cluster name a store holding many clusters (etcd) uses
            when the URL names none (``?cluster=``); a SQLite file is one
            cluster, so it is ignored there.

    Returns:
        An unopened store client; close it with ``await store.close()``.

    Raises:
        BadArgument: (argument ``url``) the URL has none of the accepted forms.
        ConfigError: an ``etcd://`` URL is malformed or names an unknown option.
    """
    if url is None or url == "":
        return SqliteStore(DEFAULT_SQLITE_PATH)
    if not isinstance(url, str):
        raise BadArgument("url", url, URL_FORMS)
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite://"):
        return SqliteStore(_sqlite_path(url))
    if url.startswith("etcd://") and len(url) > len("etcd://"):
        from shoal.store.etcd import EtcdStore  # type: ignore[import-not-found,unused-ignore]
        from shoal.store.etcd._url import parse_etcd_url

        endpoints, options = parse_etcd_url(url)
        if cluster is not None:
            options.setdefault("cluster", cluster)
        store: Store = EtcdStore(endpoints, **options)
        return store
    raise BadArgument("url", url, URL_FORMS)


async def read_snapshot(url: str | None = None, prefix: str = "", *,
                        cluster: str | None = None) -> Snapshot:
    """One snapshot of an existing store, read without changing anything.

    For tools that only look (``shoal nodes``): a SQLite store is opened
    read-only, so this needs no write access and creates no file or
    directory; etcd is only read.

    Args:
        url: as for :func:`open_store`.
        prefix: key prefix ("" for all).
        cluster: as for :func:`open_store`.

    Returns:
        The entries under ``prefix`` and their revision (``memory://`` is a
        private store: always empty).

    Raises:
        BadArgument: the URL has none of the accepted forms, or ``prefix`` is
            not a str.
        ConfigError: an ``etcd://`` URL is malformed.
        StoreUnavailable: there is no SQLite database at the path ("no
            cluster at PATH"), or the store cannot be read.
    """
    if not isinstance(prefix, str):
        raise BadArgument("prefix", prefix, "a str")
    if url is None or url == "" or (isinstance(url, str) and url.startswith("sqlite://")):
        path = Path(_sqlite_path(url) if url else DEFAULT_SQLITE_PATH)
        return await asyncio.to_thread(read_only_snapshot, path, prefix)
    store = open_store(url, cluster=cluster)
    try:
        return await store.snapshot(prefix)
    finally:
        await store.close()


async def read_records(url: str | None, kind: str, limit: int, *,
                       cluster: str | None = None) -> list[Record]:
    """The newest ``limit`` durable records of ``kind`` (store Rule 7),
    newest first, read without changing anything (as :func:`read_snapshot`).

    Raises:
        BadArgument: the URL has none of the accepted forms, or ``kind`` or
            ``limit`` is malformed.
        ConfigError: an ``etcd://`` URL is malformed.
        StoreUnavailable: there is no SQLite database at the path, or the
            store cannot be read.
    """
    check_record(kind, b"")
    check_count("limit", limit)
    if url is None or url == "" or (isinstance(url, str) and url.startswith("sqlite://")):
        path = Path(_sqlite_path(url) if url else DEFAULT_SQLITE_PATH)
        return await asyncio.to_thread(read_only_records, path, kind, limit)
    store = open_store(url, cluster=cluster)
    try:
        return await store.records(kind, limit)
    finally:
        await store.close()
