"""Subscriptions to membership events: ``Subscription`` iterators for code
outside processes, and the ``SubscriptionHub`` that owns every subscription
of a node (process watchers and iterators alike) and routes the table's
events to them.

The hub is written by ``Groups.subscribe``/``monitor`` and read by the
membership feed (``publish``); a subscriber that exits drops its entries
(``drop_owner``). An iterator keeps at most its ``limit`` of unread events,
then closes with ``SubscriptionOverflow`` (STYLE rule 20: every buffer has
a bound).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from typing import TYPE_CHECKING, Any

from shoal.errors import ShoalError
from shoal.pid import Pid
from shoal.runtime.notices import GroupEvent, Ref

if TYPE_CHECKING:
    from shoal.membership.table import MembershipEvent
    from shoal.runtime.processes import ProcessTable

__all__ = ["MAX_PENDING", "Subscription", "SubscriptionHub", "SubscriptionOverflow"]

Deliver = Callable[[GroupEvent], None]

MAX_PENDING = 10_000


class SubscriptionOverflow(ShoalError):
    """A :class:`Subscription` was not read and more than its bound of events
    piled up; it was closed. Subscribe again and re-read the members."""


class Subscription:
    """Join and leave events of one group (or a whole scope), for code that
    is not a process. Iterate it with ``async for``; ``members`` holds the
    membership at the moment of subscribing (a dict group → pids for a scope
    subscription). Close it with :meth:`close` or ``async with``.
    """

    def __init__(self, hub: SubscriptionHub, key: tuple[str, Hashable | None], ref: Ref,
                 members: Any, limit: int) -> None:
        self.ref = ref
        self.members = members
        self._hub = hub
        self._events: deque[GroupEvent] = deque()
        self._limit = limit
        self._wake: asyncio.Future[None] | None = None
        self._closed = False
        self._overflowed = False
        hub.add(key, ref, self._push)

    def _push(self, event: GroupEvent) -> None:
        if self._closed:
            return
        if len(self._events) >= self._limit:
            self._overflowed = True
            self.close()
        else:
            self._events.append(event)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def get_nowait(self) -> GroupEvent | None:
        """The next event if one is queued, else None."""
        return self._events.popleft() if self._events else None

    async def get(self) -> GroupEvent:
        """Wait for the next event.

        Raises:
            SubscriptionOverflow: the subscription fell behind and was closed.
            StopAsyncIteration: the subscription is closed.
        """
        while not self._events:
            if self._overflowed:
                raise SubscriptionOverflow(
                    f"subscription {self.ref} fell more than {self._limit} events behind"
                )
            if self._closed:
                raise StopAsyncIteration
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        return self._events.popleft()

    def __aiter__(self) -> AsyncIterator[GroupEvent]:
        return self

    async def __anext__(self) -> GroupEvent:
        return await self.get()

    def close(self) -> None:
        """Stop receiving events. Idempotent."""
        if not self._closed:
            self._closed = True
            self._hub.remove(self.ref)
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class SubscriptionHub:
    """Routes membership events to subscribers (internal)."""

    def __init__(self, processes: ProcessTable) -> None:
        self._processes = processes
        # Invariant: key (scope, group) for a group subscription, (scope, None)
        # for a scope subscription; value ref -> watcher pid, or the delivery
        # of a Subscription.
        self._subs: dict[tuple[str, Hashable | None], dict[Ref, Pid | Deliver]] = {}
        self._keys: dict[Ref, tuple[str, Hashable | None]] = {}
        self._by_owner: dict[Pid, set[Ref]] = {}

    def add(self, key: tuple[str, Hashable | None], ref: Ref, sub: Pid | Deliver) -> None:
        self._subs.setdefault(key, {})[ref] = sub
        self._keys[ref] = key
        if isinstance(sub, Pid):
            self._by_owner.setdefault(sub, set()).add(ref)

    def remove(self, ref: Ref) -> None:
        key = self._keys.pop(ref, None)
        if key is None:
            return
        subs = self._subs.get(key, {})
        sub = subs.pop(ref, None)
        if not subs:
            self._subs.pop(key, None)
        if isinstance(sub, Pid):
            refs = self._by_owner.get(sub)
            if refs is not None:
                refs.discard(ref)
                if not refs:
                    del self._by_owner[sub]

    def drop_owner(self, pid: Pid) -> None:
        """A subscribing process exited: its subscriptions go with it."""
        for ref in list(self._by_owner.get(pid, ())):
            self.remove(ref)

    def publish(self, events: list[MembershipEvent]) -> None:
        if not self._subs:
            return
        for event in events:
            for key in ((event.scope, event.group), (event.scope, None)):
                for ref, sub in list(self._subs.get(key, {}).items()):
                    notice = GroupEvent(ref=ref, scope=event.scope, group=event.group,
                                        kind=event.kind, pids=event.pids, reason=event.reason)
                    if not isinstance(sub, Pid):
                        sub(notice)
                    else:
                        proc = self._processes.live(sub)
                        if proc is not None:
                            proc.notify(notice)
