"""What every adapter's session object shares: identity, the end, keepalive.

A session has an id (never reused), the name it was opened under, a TTL,
and at most one end: ``mark_ended`` records the first reason, wakes
``wait_ended`` and stops the keepalive task. Adapters add ``apply``,
``close`` and the keepalive loop itself (``_keep_alive``).

``start_keepalive``, ``keepalive_task`` and ``mark_ended`` are for the store
that opened the session, not for applications (they are not in the
:class:`shoal.store.base.Session` contract).
"""

from __future__ import annotations

import asyncio

__all__ = ["SessionCore"]


class SessionCore:
    """Base of the memory and SQLite sessions (see the module docstring)."""

    _kind = "store"

    def __init__(self, session_id: str, name: str, ttl: float) -> None:
        self._id = session_id
        self._name = name
        self._ttl = ttl
        # Invariant: None while the session lives; set once, by mark_ended.
        self._reason: str | None = None
        self._ended_event = asyncio.Event()
        self._keepalive: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        """Unique id of this session, never reused."""
        return self._id

    @property
    def name(self) -> str:
        """The name the session was opened under."""
        return self._name

    @property
    def ended(self) -> bool:
        """True once this client knows the session has ended."""
        return self._reason is not None

    async def wait_ended(self) -> str:
        """Wait until the session ends.

        Returns:
            Why: ``"closed"``, ``"expired"``, ``"owner-dead"`` or ``"revoked"``.
        """
        await self._ended_event.wait()
        assert self._reason is not None
        return self._reason

    def pause_keepalive(self) -> None:
        """Stop refreshing the TTL, as a hung (SIGSTOPped) owner would. For tests.

        A SQLite session still lives while its lock is held (a hung owner's
        is): it expires only if its lock file is deleted as well.
        """
        if self._keepalive is not None:
            self._keepalive.cancel()

    @property
    def keepalive_task(self) -> asyncio.Task[None] | None:
        """The keepalive task, None before ``start_keepalive``. For the store."""
        return self._keepalive

    def start_keepalive(self) -> None:
        """Start refreshing the TTL in the background. For the store, once."""
        self._keepalive = asyncio.get_running_loop().create_task(
            self._keep_alive(), name=f"shoal-{self._kind}-keepalive-{self._name}"
        )

    async def _keep_alive(self) -> None:
        raise TypeError(f"{type(self).__name__} must define its keepalive loop")

    def mark_ended(self, reason: str) -> bool:
        """Record the end (the first reason wins); False if already ended. For the store."""
        if self._reason is not None:
            return False
        self._reason = reason
        self._ended_event.set()
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        return True
