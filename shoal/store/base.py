"""The store contract: where cluster membership lives.

Every adapter (memory, SQLite, etcd) implements :class:`Store` and passes the
one contract suite, ``shoal.testing.store_contract.check_store(factory)``.

Rules every adapter keeps:

- Rule 1: keys are ``str`` (``/``-separated, no adapter prefix: the adapter
  adds its cluster prefix itself), values are ``bytes``. Nothing stored is
  executed or unpickled by shoal (G7).
- Rule 2: every write is made under a *session*. When the session ends
  (closed, expired, revoked, or its owner is found dead) all of its keys
  disappear in one atomic change, at one revision.
- Rule 3: the revision rises with every change and is shared by all keys of
  the store. ``snapshot(prefix)`` returns entries and the revision they are
  consistent at; ``watch(prefix, revision)`` yields every change under
  ``prefix`` after that revision and nothing else, in order, with no gap. A
  watcher that cannot be given the missing changes (log compacted) gets a
  :class:`Resync` with a fresh snapshot and must *replace* its view with it.
- Rule 3b: a delete event names only its key, never the session that owned
  it (``Event.session`` is ``None``): adapters do not read previous values
  (etcd's ``prev_kv`` costs a read transaction per event and watcher). What a
  consumer needs to know about a deleted key is in the key itself (the layout
  names the node and its incarnation), or in the puts it saw before.
- Rule 4: session names are unique among live sessions: opening a session
  under a name a live session holds raises :class:`~shoal.errors.NameInUse`.
- Rule 5: when the store cannot be reached every operation raises
  :class:`~shoal.errors.StoreUnavailable` within its deadline; nothing blocks
  forever (G6).
- Rule 6: a :class:`Create` in a batch writes its key only if the key does
  not exist, whoever owns it; if it exists the whole batch is refused with
  :class:`~shoal.errors.KeyExists` (carrying the value and session found),
  nothing applied. Of two sessions creating one key, the first the store
  orders wins (etcd: a transaction comparing ``create_revision == 0``);
  cluster-wide names (``names/<name>``) rely on it.
- Rule 7: *durable records* (``append_record`` / ``records``) are the one
  exception to Rule 2: an append-only log per ``kind`` (the audit log is
  kind ``"audit"``), bound to no session, that outlives every node. Records
  are not keys: snapshots and watches never show them. Each gets a sequence
  number that rises per kind; an append keeps the newest ``keep`` records of
  its kind (default :data:`RECORD_KEEP`) and drops the older ones in the same
  transaction, so the log is bounded. A value is ``bytes`` of at most
  :data:`RECORD_MAX_BYTES` (JSON by convention; never executed, Rule 1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "RECORD_KEEP",
    "RECORD_MAX_BYTES",
    "Changes",
    "Clock",
    "Create",
    "Delete",
    "Entry",
    "Event",
    "Op",
    "Put",
    "Record",
    "Resync",
    "Session",
    "Sleep",
    "Snapshot",
    "Store",
    "WatchItem",
]

Clock = Callable[[], float]
"""Returns monotonic seconds (``time.monotonic`` in production). Adapters
that keep time take one injected (with a matching :data:`Sleep`), so tests
drive TTLs with ``shoal.testing.clock.ManualClock`` instead of sleeping."""

Sleep = Callable[[float], Awaitable[None]]
"""Waits that many seconds of the matching clock (``asyncio.sleep``)."""


RECORD_KEEP = 10_000
"""How many records of one kind a store keeps unless an append says otherwise
(Rule 7): the newest ones."""

RECORD_MAX_BYTES = 256 * 1024
"""The largest record value accepted (etcd refuses requests over 1.5 MiB)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One durable record (Rule 7).

    Attributes:
        kind: the log it belongs to (``"audit"``).
        seq: its sequence number; higher is newer within a kind.
        value: the stored bytes.
    """

    kind: str
    seq: int
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One key in the store.

    Attributes:
        key: the key, without the adapter's prefix.
        value: the stored bytes.
        session: id of the session that owns the key.
        revision: the revision at which the key was last written.
    """

    key: str
    value: bytes
    session: str
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One change of one key.

    Attributes:
        kind: ``"put"`` or ``"delete"``.
        key: the key that changed.
        value: the new value for a put, ``None`` for a delete.
        session: for a put, the id of the session that owns the key; for a
            delete, ``None`` (Rule 3b: the key says whose it was).
        revision: the revision of this change. Several events of one atomic
            batch or one session end share a revision.
    """

    kind: Literal["put", "delete"]
    key: str
    value: bytes | None
    session: str | None
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """All entries under a prefix, consistent at ``revision``."""

    entries: Mapping[str, Entry]
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Changes:
    """A batch of consecutive changes from a watch. ``revision`` is that of
    the last event; the next batch starts strictly after it."""

    events: tuple[Event, ...]
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Resync:
    """The watcher fell behind what the store still remembers. Replace the
    whole view with ``snapshot``; the watch continues after its revision."""

    snapshot: Snapshot


WatchItem = Changes | Resync


@dataclass(frozen=True, slots=True, kw_only=True)
class Put:
    """Write ``value`` under ``key`` in a batch."""

    key: str
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    """Delete ``key`` in a batch (no error if it is absent)."""

    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Create:
    """Write ``value`` under ``key`` in a batch only if ``key`` does not
    exist (create-if-absent, Rule 6); otherwise the batch raises
    :class:`~shoal.errors.KeyExists` and nothing of it is applied."""

    key: str
    value: bytes


Op = Put | Delete | Create


@runtime_checkable
class Session(Protocol):
    """A live registration of one node; owns the keys written through it.

    The adapter keeps it alive in the background (keepalive every ttl/3 or
    its equivalent) until :meth:`close` or until the store ends it.
    """

    @property
    def id(self) -> str:
        """Unique id of this session, never reused."""
        ...

    @property
    def name(self) -> str:
        """The unique name the session was opened under (the node name)."""
        ...

    @property
    def ended(self) -> bool:
        """True once the session has ended, for whatever reason."""
        ...

    async def apply(self, ops: Sequence[Op]) -> int:
        """Apply puts, creates and deletes atomically; return the new
        revision (the current one when nothing changed, e.g. only deletes of
        absent keys).

        Raises:
            KeyExists (a StoreError): a :class:`Create`'s key exists (Rule
                6); nothing of the batch was applied.
            BadArgument: a key is not a non-empty str, a value is not bytes,
                or ``ops`` names a key twice (etcd refuses that in one txn).
            SessionEnded (a StoreError): the session is over; open a new one.
            StoreUnavailable: the store cannot be reached.
        """
        ...

    async def wait_ended(self) -> str:
        """Wait until the session ends; return why (``"closed"``,
        ``"expired"``, ``"revoked"``, ``"owner-dead"``)."""
        ...

    async def close(self) -> None:
        """End the session now; its keys disappear atomically. Idempotent."""
        ...


@runtime_checkable
class Store(Protocol):
    """A membership store. See the module docstring for the rules."""

    async def open_session(self, name: str, info: bytes, ttl: float) -> Session:
        """Open a session named ``name``, storing ``info`` (opaque bytes)
        under the key ``nodes/<name>`` owned by the session itself.

        Raises:
            NameInUse: a live session already holds ``name``.
            BadArgument: ``name`` is empty or contains ``/``, ``info`` is not
                bytes, or ``ttl <= 0``.
            StoreUnavailable: the store cannot be reached.
        """
        ...

    async def snapshot(self, prefix: str) -> Snapshot:
        """Every entry whose key starts with ``prefix``, and their revision."""
        ...

    def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchItem]:
        """Changes to keys under ``prefix`` strictly after ``revision``, in
        order, with no gap; or a :class:`Resync` when they are gone. Runs
        until the consumer stops iterating (``aclose``) or the store closes."""
        ...

    async def append_record(self, kind: str, value: bytes, *, keep: int = RECORD_KEEP) -> int:
        """Append a durable record to the log ``kind`` (Rule 7), bound to no
        session; drop all but the newest ``keep`` records of that kind in
        the same transaction.

        Returns:
            The record's sequence number.

        Raises:
            BadArgument: ``kind`` is not a non-empty str without ``/`` (at
                most 64 characters), ``value`` is not bytes or is larger than
                :data:`RECORD_MAX_BYTES`, or ``keep`` is not an int >= 1.
            StoreUnavailable: the store cannot be reached.
        """
        ...

    async def records(self, kind: str, limit: int) -> list[Record]:
        """The newest ``limit`` records of ``kind``, newest first.

        Raises:
            BadArgument: ``kind`` is malformed or ``limit`` is not an int >= 1.
            StoreUnavailable: the store cannot be reached.
        """
        ...

    async def probe(self) -> None:
        """Look for sessions whose owner died or expired and end them now.
        Called by nodes when a peer connection breaks; adapters also do it
        in the background."""
        ...

    async def close(self) -> None:
        """Release the adapter's resources. Sessions opened through it end."""
        ...
