"""The etcd adapter: the store contract on an etcd v3 cluster, for clusters spanning hosts.

Imported only when an ``etcd://`` URL asks for it (:func:`shoal.store.open_store`),
so its gRPC client library is needed only then. Its modules, top to bottom
(each header states its rules):

- ``_store``: :class:`EtcdStore`, the mapping of the contract onto etcd:
  deadlines across endpoints, snapshots, watches.
- ``_session``: :class:`EtcdSession`, one etcd lease and its keepalive.
- ``_compact``: the compaction duty one session at a time holds, keeping
  etcd's history bounded.
- ``_url``: endpoints, the ``etcd://`` URL, TLS and auth, checked before any IO.
- ``_client``: the typed gRPC calls to one endpoint.

Why etcd and this client layout: see ``docs/etcd.md``.
"""

from shoal.store.etcd._session import EtcdSession
from shoal.store.etcd._store import DEFAULT_TTL, EtcdStore

__all__ = ["DEFAULT_TTL", "EtcdSession", "EtcdStore"]
