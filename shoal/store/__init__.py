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
"""

from __future__ import annotations

from shoal.errors import BadArgument
from shoal.store.base import (
    Changes,
    Delete,
    Entry,
    Event,
    Op,
    Put,
    Resync,
    Session,
    Snapshot,
    Store,
    WatchItem,
)
from shoal.store.memory import MemorySession, MemoryStore
from shoal.store.sqlite import DEFAULT_SQLITE_PATH, SqliteSession, SqliteStore

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "URL_FORMS",
    "Changes",
    "Delete",
    "Entry",
    "Event",
    "MemorySession",
    "MemoryStore",
    "Op",
    "Put",
    "Resync",
    "Session",
    "Snapshot",
    "SqliteSession",
    "SqliteStore",
    "Store",
    "WatchItem",
    "open_store",
]

URL_FORMS = (
    "None or '' (sqlite at ./.shoal/cluster.db), 'memory://', 'sqlite:///abs/path', "
    "'sqlite://relative/path' or 'etcd://host:port[,host:port...]'"
)
"""The accepted store URL forms, as error messages name them."""


def open_store(url: str | None = None) -> Store:
    """Build the store a URL names. Does no IO: errors reaching the store
    surface from its first operation as StoreUnavailable.

    Args:
        url: see the module docstring for the forms.

    Returns:
        An unopened store client; close it with ``await store.close()``.

    Raises:
        BadArgument: (argument ``url``) the URL has none of the accepted forms.
    """
    if url is None or url == "":
        return SqliteStore(DEFAULT_SQLITE_PATH)
    if not isinstance(url, str):
        raise BadArgument("url", url, URL_FORMS)
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path or path == "/" or "?" in path or "#" in path:
            raise BadArgument("url", url, URL_FORMS)
        return SqliteStore(path)
    if url.startswith("etcd://") and len(url) > len("etcd://"):
        from shoal.store.etcd import EtcdStore  # type: ignore[import-not-found,unused-ignore]

        store: Store = EtcdStore.from_url(url)
        return store
    raise BadArgument("url", url, URL_FORMS)
