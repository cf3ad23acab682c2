"""The SQLite adapter: the embedded default store, for many node processes on one host.

Its modules, top to bottom (each header states its rules):

- ``_store``: :class:`SqliteStore` and :class:`SqliteSession`, the asyncio
  side: one worker thread per client, keepalives, the probe, watches.
- ``_db``: the synchronous side, run on that worker thread only: schema,
  transactions, lock files, the file's identity.
- ``_read``: the change-log and snapshot queries both sides share.
- ``_readonly``: the read-only path of :func:`shoal.store.read_snapshot`,
  which never creates anything.
- ``_wake``: wake-up datagrams between the processes sharing a database.

File modes come from :mod:`shoal._files`, shared with the cluster secret.
"""

from shoal.store.sqlite._store import DEFAULT_SQLITE_PATH, SqliteSession, SqliteStore

__all__ = ["DEFAULT_SQLITE_PATH", "SqliteSession", "SqliteStore"]
