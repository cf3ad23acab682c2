"""EtcdStore: the store contract on an etcd v3 cluster, for clusters spanning hosts.

What it owns: the mapping of :mod:`shoal.store.base` onto etcd. Keys live under
``/shoal/<cluster>/``; a session is one etcd lease (:mod:`._session`); a
session's node record is ``nodes/<name>``, created by a transaction only if
absent; a batch is one transaction (one revision); a session end is a lease
revoke or expiry (all its keys vanish at one revision); a watch is an etcd
watch from a revision. :mod:`._client` holds the gRPC calls.

Rules:

- Rule 1: every operation runs under one deadline (``timeout``) across all
  endpoints; an endpoint that fails or stays silent for ``attempt_timeout`` is
  left for the next one. When the deadline passes, :class:`StoreUnavailable`
  names every endpoint and its last error (G6). No gRPC exception escapes.
- Rule 2: a watch's position is ``last``, the revision of the last event it
  handed out (or of its last Resync). Every (re)opened etcd stream starts at
  ``last + 1``, never at a revision the client library remembers: libraries
  that resume on their own were seen to skip revisions.
- Rule 3: an event at or below ``last`` is dropped (a defence: etcd should
  never send one), so a resume cannot repeat.
- Rule 4: "compacted" means the events after ``last`` are gone: the watch
  hands out one Resync with a fresh snapshot and continues after it.
- Rule 5: watch trouble is bounded: after ``watch_give_up`` seconds in which
  no stream could be opened, the watch raises StoreUnavailable.
- Rule 5b: watches never ask for previous values (``prev_kv``): for each
  delete or update and each watcher, etcd 3.4 runs a read transaction to
  find them, 100 to 1,000 times the cost of sending the event. A delete carries
  its key only (the store contract's Rule 3b).
- Rule 5c: keys under ``_shoal/`` are the adapter's own (the compaction
  duty, :mod:`._compact`; durable records, :mod:`._records`): snapshots and
  watches never show them.
- Rule 6: when the store closes, its watches end quietly; a cancellation of
  the consumer's own task is never swallowed.

Why etcd and this client layout: see ``docs/etcd.md``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from shoal._backoff import backoff_delays
from shoal.errors import BadArgument, NameInUse, StoreError, StoreUnavailable
from shoal.store._validate import (
    check_info,
    check_name,
    check_prefix,
    check_revision,
    check_ttl,
    node_key,
)
from shoal.store.base import Changes, Entry, Event, Resync, Snapshot, WatchItem
from shoal.store.etcd._client import (
    ChannelConfig,
    EndpointConnection,
    EtcdCallError,
    KeyValue,
    WatchEvent,
    WatchStream,
    compare_created,
    put_op,
    range_op,
)
from shoal.store.etcd._compact import (
    DEFAULT_COMPACTION_INTERVAL,
    DEFAULT_COMPACTION_RETENTION,
    INTERNAL_PREFIX,
    CompactionPolicy,
    Compactor,
)
from shoal.store.etcd._records import RecordsMixin
from shoal.store.etcd._session import EtcdSession, session_id
from shoal.store.etcd._url import channel_config, check_endpoints, parse_etcd_url

__all__ = ["DEFAULT_TTL", "EtcdSession", "EtcdStore"]

DEFAULT_TTL = 5.0
"""Session TTL in seconds that shoal uses unless configured otherwise."""

# Backoff between rounds of endpoints that all failed (an election takes
# about a second), and between watch streams that keep breaking; seconds,
# before jitter (shoal._backoff).
CALL_RETRY_FIRST, CALL_RETRY_MAX = 0.1, 0.8
SNAPSHOT_PAGE = 2000  # keys per Range request of a snapshot (~10 ms of decoding)
WATCH_RETRY_FIRST, WATCH_RETRY_MAX = 0.1, 1.0

_log = logging.getLogger("shoal.store.etcd")
_T = TypeVar("_T")


class EtcdStore(RecordsMixin):
    """The store contract on etcd v3 (see the module docstring for the rules).

    Args:
        endpoints: ``"host:port"`` or several of them (a list, or one string
            separated by commas); tried in order, failing over when one is down.
        cluster: the shoal cluster name; keys live under ``/shoal/<cluster>/``.
        timeout: deadline in seconds of every operation across all endpoints.
        attempt_timeout: how long one endpoint may stay silent before the
            next is tried.
        watch_give_up: a watch raises :class:`StoreUnavailable` after failing
            to reach any endpoint for this many seconds.
        ca, cert, key: paths of PEM files for TLS (``ca`` to verify the
            server; ``cert`` and ``key`` for a client certificate).
        user, password: etcd authentication (both or neither).
        compaction_interval, compaction_retention: every session looks at
            etcd's compaction duty every ``compaction_interval`` seconds; its
            holder compacts history older than ``compaction_retention``
            seconds (``_compact.py``). ``compaction_interval=0``: never.

    Raises:
        BadArgument: an argument is malformed.
        ConfigError: a TLS file cannot be read, or TLS/auth options conflict.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] = "127.0.0.1:2379",
        *,
        cluster: str = "default",
        timeout: float = 5.0,
        attempt_timeout: float = 2.0,
        watch_give_up: float = 30.0,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        user: str | None = None,
        password: str | None = None,
        compaction_interval: float = DEFAULT_COMPACTION_INTERVAL,
        compaction_retention: float = DEFAULT_COMPACTION_RETENTION,
    ) -> None:
        self._endpoints = check_endpoints(endpoints)
        if not isinstance(cluster, str) or not cluster or "/" in cluster:
            raise BadArgument("cluster", cluster, "a non-empty str without '/'")
        self._cluster = cluster
        self._prefix = f"/shoal/{cluster}/".encode()
        self._timeout = check_ttl(timeout)
        self._attempt_timeout = check_ttl(attempt_timeout)
        self._watch_give_up = check_ttl(watch_give_up)
        off = compaction_interval == 0 and not isinstance(compaction_interval, bool)
        self._compactor = None if off else Compactor(
            CompactionPolicy(compaction_interval, compaction_retention))
        config: ChannelConfig = channel_config(ca, cert, key, user, password)
        self._conns = [EndpointConnection(e, config) for e in self._endpoints]
        # Invariant: _current indexes the endpoint that answered last.
        self._current = 0
        self._sessions: set[EtcdSession] = set()
        self._streams: set[WatchStream] = set()
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> EtcdStore:
        """Build a store from an ``etcd://h1:p1[,h2:p2...][?option=value&...]`` URL.

        Args:
            url: the store URL. Options: ``cluster``, ``timeout``,
                ``attempt_timeout``, ``watch_give_up``, ``ca``, ``cert``,
                ``key``, ``user``, ``password``, ``compaction_interval``,
                ``compaction_retention`` (see the constructor); unknown
                options are refused.

        Returns:
            An unconnected store (connections are made on first use).

        Raises:
            ConfigError: the URL is malformed or names an unknown option.
        """
        endpoints, options = parse_etcd_url(url)
        return cls(endpoints, **options)

    @property
    def cluster(self) -> str:
        """The shoal cluster name."""
        return self._cluster

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The configured ``host:port`` endpoints."""
        return self._endpoints

    # etcd_key, call_endpoints, refusal, revoke_lease and session_ended are
    # what its sessions use of the store (``LeaseOwner``), not for applications.

    def etcd_key(self, key: str) -> bytes:
        """The etcd key of a store key (the cluster prefix added)."""
        return self._prefix + key.encode()

    def _decode(self, key: bytes) -> str:
        return key[len(self._prefix) :].decode(errors="replace")

    def _entry(self, kv: KeyValue) -> Entry:
        return Entry(
            key=self._decode(kv.key),
            value=kv.value,
            session=session_id(kv.lease),
            revision=kv.mod_revision,
        )

    def _event(self, event: WatchEvent) -> Event:
        put = event.kind == "put"
        return Event(kind=event.kind, key=self._decode(event.kv.key),
                     value=event.kv.value if put else None,
                     # no prev_kv: a delete names its key only (contract Rule 3b)
                     session=session_id(event.kv.lease) if put else None,
                     revision=event.kv.mod_revision)

    async def call_endpoints(
        self,
        what: str,
        run: Callable[[EndpointConnection, float], Awaitable[_T]],
        *,
        budget: float | None = None,
    ) -> _T:
        """Run ``run(connection, attempt_deadline)``, failing over between
        endpoints until the operation's deadline (Rule 1)."""
        if self._closed:
            raise StoreUnavailable(f"etcd store for {','.join(self._endpoints)} is closed")
        budget = self._timeout if budget is None else budget
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        failures: dict[str, str] = {}
        attempt = 0
        delays = backoff_delays(initial=CALL_RETRY_FIRST, maximum=CALL_RETRY_MAX)
        while True:
            if self._closed:  # closed while this call was failing over
                raise StoreUnavailable(f"etcd store for {','.join(self._endpoints)} is closed")
            conn = self._conns[self._current]
            remaining = deadline - loop.time()
            try:
                result = await run(conn, max(0.05, min(remaining, self._attempt_timeout)))
            except EtcdCallError as error:
                if error.kind == "auth":
                    raise StoreUnavailable(
                        f"etcd {what} refused at {error.endpoint}: {error.detail} "
                        "(check user/password and the user's role)"
                    ) from None
                if error.kind != "unavailable":
                    raise
                failures[conn.endpoint] = error.detail
                self._failed(conn.endpoint)
            else:
                return result
            attempt += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                detail = "; ".join(f"{e}: {d}" for e, d in failures.items())
                raise StoreUnavailable(
                    f"etcd {what} failed: no endpoint answered within {budget:g}s ({detail})"
                )
            if attempt % len(self._conns) == 0:
                # Every endpoint failed once: back off (an election takes ~1 s).
                await asyncio.sleep(min(remaining, next(delays)))

    def _failed(self, endpoint: str) -> None:
        # Move on only if nobody moved on already: concurrent failures of one
        # endpoint must not skip a healthy one.
        if self._conns[self._current].endpoint == endpoint:
            self._current = (self._current + 1) % len(self._conns)

    def refusal(self, what: str, error: EtcdCallError) -> StoreError:
        """The error for a call etcd answered with a refusal."""
        return StoreError(f"etcd refused {what} at {error.endpoint}: {error.detail}")

    async def open_session(self, name: str, info: bytes, ttl: float) -> EtcdSession:
        """Grant a lease and create ``nodes/<name>`` under it, only if absent.

        Args:
            name: unique node name (non-empty, no ``/``).
            info: opaque bytes stored under ``nodes/<name>``.
            ttl: seconds; rounded up to whole seconds (etcd may grant more).

        Returns:
            The live session, kept alive every TTL/3 in the background.

        Raises:
            BadArgument: an argument is malformed.
            NameInUse: a live session holds ``name``.
            StoreUnavailable: no endpoint answered before the deadline.
        """
        check_name(name)
        check_info(info)
        lease_ttl = max(1, math.ceil(check_ttl(ttl)))

        async def grant(conn: EndpointConnection, seconds: float) -> tuple[int, int]:
            return await conn.lease_grant(lease_ttl, seconds)

        try:
            lease, granted = await self.call_endpoints("lease grant", grant)
        except EtcdCallError as error:
            raise self.refusal("lease grant", error) from None
        key = self.etcd_key(node_key(name))

        async def create(conn: EndpointConnection, seconds: float) -> tuple[bool, list[KeyValue]]:
            ok, _, read = await conn.txn(
                [compare_created(key)], [put_op(key, info, lease)], [range_op(key)], seconds
            )
            return ok, read

        try:
            created, holders = await self.call_endpoints("open session", create)
        except BaseException as error:
            await self.revoke_lease(lease)
            if isinstance(error, EtcdCallError):
                raise self.refusal("open session", error) from None
            raise
        # A retried create finds the key written by its own first attempt.
        if not created and not (holders and holders[0].lease == lease):
            await self.revoke_lease(lease)
            holder = f"session {session_id(holders[0].lease)}" if holders else ""
            raise NameInUse(name, holder)
        session = EtcdSession(self, name, lease, granted, self._compactor)
        self._sessions.add(session)
        return session

    def session_ended(self, session: EtcdSession) -> None:
        """Forget an ended session (it is no longer probed nor closed)."""
        self._sessions.discard(session)

    async def revoke_lease(self, lease: int) -> None:
        """Revoke a lease, best effort (a failure is logged)."""

        async def revoke(conn: EndpointConnection, seconds: float) -> None:
            await conn.lease_revoke(lease, seconds)

        try:
            await self.call_endpoints("lease revoke", revoke)
        except EtcdCallError as error:
            if error.kind != "lease_not_found":
                _log.warning("etcd lease %x revoke refused: %s", lease, error)
        except StoreUnavailable as error:
            _log.warning("etcd lease %x not revoked, it expires by itself: %s", lease, error)

    async def snapshot(self, prefix: str) -> Snapshot:
        """Every entry under ``prefix``, read at one etcd revision.

        Args:
            prefix: key prefix (``""`` for all keys of the cluster).

        Returns:
            The entries and the revision they are consistent at.

        Raises:
            BadArgument: ``prefix`` is not a str.
            StoreUnavailable: no endpoint answered before the deadline.
            StoreError: etcd refused the read.
        """
        check_prefix(prefix)
        full = self.etcd_key(prefix)

        async def read(conn: EndpointConnection, seconds: float) -> Snapshot:
            entries: dict[str, Entry] = {}
            at = 0  # read in pages (SNAPSHOT_PAGE keys), all at one revision
            async for kvs, at in conn.range_pages(full, SNAPSHOT_PAGE, seconds):  # noqa: B007
                entries.update((e.key, e) for e in map(self._entry, kvs)
                               if not e.key.startswith(INTERNAL_PREFIX))  # not ours
            return Snapshot(entries=entries, revision=at)
        try:
            return await self.call_endpoints("snapshot", read)
        except EtcdCallError as error:
            raise self.refusal("snapshot", error) from None

    def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchItem]:
        """Changes under ``prefix`` strictly after ``revision``, in order.

        Args:
            prefix: key prefix (``""`` for all keys of the cluster).
            revision: the revision the caller's view is at.

        Returns:
            An async iterator of :class:`Changes` (one per etcd watch
            response, whole revisions only) and :class:`Resync`; it ends when
            the store closes, and raises :class:`StoreUnavailable` after
            ``watch_give_up`` seconds without any endpoint.

        Raises:
            BadArgument: ``prefix`` or ``revision`` is malformed.
            StoreUnavailable: the store is closed.
        """
        check_prefix(prefix)
        check_revision(revision)
        if self._closed:
            raise StoreUnavailable("etcd store is closed")
        return self._resuming_watch(prefix, revision)

    async def probe(self) -> None:
        """Refresh every session of this store once now; a session whose
        lease is gone is reported ended (etcd itself deletes expired keys).

        Raises:
            StoreUnavailable: no endpoint answered before the deadline.
        """
        for session in list(self._sessions):
            await session.check()

    async def close(self) -> None:
        """Close this store's sessions (revoking their leases), end its
        watches and close its connections. Idempotent."""
        if self._closed:
            return
        await asyncio.gather(*(s.close() for s in list(self._sessions)))
        self._closed = True
        for stream in list(self._streams):
            stream.cancel()
        for conn in self._conns:
            await conn.close()

    async def _resuming_watch(self, prefix: str, revision: int) -> AsyncIterator[WatchItem]:
        """Watch ``prefix`` after ``revision``, resuming across stream failures.

        Args:
            prefix: key prefix without the store's cluster prefix.
            revision: the revision the consumer's view is at.

        Yields:
            :class:`Changes` (the events of one etcd response: whole revisions)
            and :class:`Resync` after a compaction.

        Raises:
            StoreUnavailable: no stream could be opened for ``watch_give_up``
                seconds.
            StoreError: etcd refused the watch (for instance permission denied).
        """
        key = self.etcd_key(prefix)
        loop = asyncio.get_running_loop()
        # Invariant: every event with revision <= last has been handed out (or
        # is covered by the last Resync), and none above it.
        last = revision
        need_resync = False
        trouble_since: float | None = None
        delays = backoff_delays(initial=WATCH_RETRY_FIRST, maximum=WATCH_RETRY_MAX)
        problem = ""

        async def open_stream(conn: EndpointConnection, seconds: float) -> WatchStream:
            return await conn.open_watch(key, last + 1, seconds)

        while not self._closed:
            stream: WatchStream | None = None
            try:
                if need_resync:
                    snapshot = await self.snapshot(prefix)
                    need_resync = False
                    last = snapshot.revision
                    yield Resync(snapshot=snapshot)
                    continue
                stream = await self.call_endpoints("watch", open_stream)
                if self._closed:  # it closed while the stream was being opened
                    return
                self._streams.add(stream)
                if trouble_since is not None:  # it works again: the next trouble starts over
                    trouble_since = None
                    delays = backoff_delays(initial=WATCH_RETRY_FIRST, maximum=WATCH_RETRY_MAX)
                while True:
                    batch = await stream.next_batch()
                    events = tuple(
                        e for e in map(self._event, batch.events)
                        if e.revision > last and not e.key.startswith(INTERNAL_PREFIX)
                    )
                    if events:
                        last = events[-1].revision
                        yield Changes(events=events, revision=last)
            except EtcdCallError as error:
                if error.kind == "compacted":
                    need_resync = True
                    continue
                if error.kind != "unavailable":
                    raise self.refusal("watch", error) from None
                self._failed(error.endpoint)
                problem = str(error)
            except StoreUnavailable as error:
                problem = str(error)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and task is not None and task.cancelling() == 0:
                    return  # the store closed under us: end quietly (Rule 6)
                raise
            finally:
                if stream is not None:
                    self._streams.discard(stream)
                    stream.cancel()
            if self._closed:
                return
            now = loop.time()
            if trouble_since is None:
                trouble_since = now
            elif now - trouble_since > self._watch_give_up:
                raise StoreUnavailable(
                    f"etcd watch of {prefix!r} gave up after {self._watch_give_up:g}s "
                    f"without a working endpoint: {problem}"
                )
            _log.info(
                "etcd watch of %r resumes at revision %d after: %s", prefix, last + 1, problem
            )
            # Back off a stream that keeps breaking (a member without a leader).
            await asyncio.sleep(next(delays))
