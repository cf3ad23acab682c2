"""Process groups as users see them: join, leave, read, subscribe, select, call.

``Groups`` is a view of one scope of its node's ``GroupTable``. Reads and
selection are local lookups; the table is written only here and in the
node's exit path.

Group calls follow G3 exactly: a member is retried elsewhere only when the
request provably did not start on it (``NoSuchProcess``, ``Overloaded``, a
node known down before sending), or, for requests the caller marked
``idempotent``, when delivery is unknown (the callee exited mid-call, the
connection broke, its node fell silent for the heartbeat timeout with the
attempt in flight: ``remote.py`` Rule 4). A usage error (``BadArgument``: a request that cannot be
encoded for another node, say) is the caller's and is raised at once, never
retried. When every member left died, the call waits a moment for a
replacement to join (``group_retry.py``, Rule 2). Every attempt shares one
deadline.

Subscribers are either processes (events arrive in ``handle_info`` as
``GroupEvent``) or ``Subscription`` iterators for code outside processes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal.errors import (
    BadArgument,
    CallTimeout,
    NodeDown,
    NoMembers,
    NoSuchProcess,
    ShoalError,
)
from shoal.membership.strategies import STRATEGIES, key_digest, select
from shoal.pid import Pid
from shoal.runtime.checks import check_group, check_pids, check_timeout
from shoal.runtime.counters import GROUP
from shoal.runtime.group_retry import no_members, retryable, wait_replaced
from shoal.runtime.notices import Ref
from shoal.runtime.subscriptions import MAX_PENDING, Subscription, SubscriptionHub

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable
    from shoal.runtime.cluster import ClusterView
    from shoal.runtime.feed import MembershipFeed
    from shoal.runtime.messaging import Messaging
    from shoal.runtime.processes import ProcessTable
    from shoal.runtime.signals import Signals

Observer = Callable[[Pid, float, float, "ShoalError | None"], None]
"""What ``Groups.call(observe=...)`` calls after each attempt."""

__all__ = ["Groups", "Observer"]

DEFAULT_STRATEGY = "local_first"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupParts:
    """The node's components a scope's ``Groups`` works with (built once by
    the node)."""

    name: str
    creation: int
    table: GroupTable
    hub: SubscriptionHub
    processes: ProcessTable
    signals: Signals
    cluster: ClusterView
    feed: MembershipFeed
    messaging: Messaging
    rng: random.Random


class Groups:
    """The process groups of one scope, as seen from one node.

    Get one with ``node.groups`` (scope ``"default"``) or ``node.scope(name)``.
    """

    def __init__(self, parts: GroupParts, scope: str) -> None:
        self.scope = scope
        self._name = parts.name
        self._creation = parts.creation
        self._table = parts.table
        self._hub = parts.hub
        self._processes = parts.processes
        self._signals = parts.signals
        self._cluster = parts.cluster
        self._feed = parts.feed
        self._messaging = parts.messaging
        self._rng = parts.rng
        self._getrandbits = parts.rng.getrandbits

    # -- membership ----------------------------------------------------------------

    async def join(self, group: str, pids: Pid | list[Pid]) -> None:
        """Add ``pids`` (one pid or a list) to ``group``, once per pid per
        call: a pid joined twice is listed twice. Members must be live
        processes of this node; all are checked before any joins.

        The join is in this node's view when this returns; it reaches the
        store (and from there every other node) in the background, batched
        with other changes. ``await groups.sync()`` waits for that.

        Raises:
            BadArgument: ``group`` is not a non-empty str, ``pids`` not pids,
                or a pid belongs to another node.
            NoSuchProcess: a pid is not alive.
        """
        check_group(group)
        members = check_pids("pids", pids)
        for pid in members:
            if pid.node != self._name or pid.creation != self._creation:
                if pid.node != self._name:
                    raise BadArgument("pids", pid, f"a pid of this node ({self._name!r})")
                raise NoSuchProcess(pid)  # an earlier incarnation's pid is dead
            if self._processes.live(pid) is None:
                raise NoSuchProcess(pid)
        self._feed.publish(self._table.join(self.scope, group, members))

    async def leave(self, group: str, pids: Pid | list[Pid]) -> bool:
        """Remove one join of each pid from ``group`` (replicated like
        :meth:`join`). A pid listed twice removes two joins, if it has them.

        Returns:
            True when at least one join was removed, False when none was
            (no pid was joined, or ``pids`` is empty): exactly when Erlang's
            ``pg:leave`` answers ``ok`` rather than ``not_joined``.

        Raises:
            BadArgument: bad ``group`` or ``pids``, or a pid of another node.
        """
        check_group(group)
        members = check_pids("pids", pids)
        for pid in members:
            if pid.node != self._name:
                raise BadArgument("pids", pid, f"a pid of this node ({self._name!r})")
        events, _ = self._table.leave(self.scope, group, members)
        self._feed.publish(events)
        return bool(events)  # pg: ok when anything left, not_joined otherwise

    async def sync(self, timeout: float = 5.0) -> None:
        """Wait until every membership change this node made so far (in any
        scope) is written to the store, so other nodes see it as soon as
        their watch delivers it.

        Raises:
            CallTimeout: the store did not confirm within ``timeout`` (the
                changes stay queued and are retried).
            BadArgument: ``timeout`` is not a number > 0.
        """
        seconds = check_timeout(timeout)
        if not await self._feed.replicated(seconds):
            raise CallTimeout("the membership store", seconds)

    def get_members(self, group: str) -> list[Pid]:
        """Every member of ``group`` (once per join), in no promised order
        (as Erlang's ``pg``); empty if none. A new list each call: the table
        keeps serials, so the pids of other nodes are built for it (about
        0.15 µs a member), this node's are the processes' own."""
        return self._table.members(self.scope, check_group(group))

    def get_local_members(self, group: str) -> list[Pid]:
        """Members of ``group`` hosted on this node."""
        return self._table.local_members(self.scope, check_group(group))

    def which_groups(self) -> list[str]:
        """Every non-empty group of this scope."""
        return [str(g) for g in self._table.which_groups(self.scope)]

    # -- subscriptions ----------------------------------------------------------------

    def monitor(self, group: str, *, watcher: Pid | None = None) -> tuple[Ref, list[Pid]]:
        """Subscribe a process (the caller by default) to ``group``: each join
        and leave arrives in its ``handle_info`` as a ``GroupEvent``.

        Returns:
            The subscription's ref (for ``demonitor``) and the current members.

        Raises:
            BadArgument: bad ``group``, or no watcher outside a process.
            NoSuchProcess: ``watcher`` is dead.
        """
        check_group(group)
        proc = self._signals.watcher(watcher)
        ref = self._processes.new_ref()
        self._hub.add((self.scope, group), ref, proc.pid)
        return ref, self.get_members(group)

    def monitor_scope(self, *, watcher: Pid | None = None) -> tuple[Ref, dict[str, list[Pid]]]:
        """Like :meth:`monitor`, for every group of the scope."""
        proc = self._signals.watcher(watcher)
        ref = self._processes.new_ref()
        self._hub.add((self.scope, None), ref, proc.pid)
        return ref, {g: self.get_members(g) for g in self.which_groups()}

    def demonitor(self, ref: Ref) -> None:
        """End a subscription made with :meth:`monitor` or :meth:`monitor_scope`."""
        if not isinstance(ref, Ref):
            raise BadArgument("ref", ref, "a shoal.Ref")
        self._hub.remove(ref)

    def subscribe(self, group: str | None = None, *, limit: int = MAX_PENDING) -> Subscription:
        """Subscribe code outside processes to ``group``'s events, or to the
        whole scope's when ``group`` is None. At most ``limit`` unread events
        are kept; past that the subscription closes and raises
        :class:`~shoal.runtime.subscriptions.SubscriptionOverflow`.

        Raises:
            BadArgument: bad ``group`` or ``limit``.
        """
        if group is not None:
            check_group(group)
        if type(limit) is not int or limit < 1:
            raise BadArgument("limit", limit, "an int >= 1")
        ref = self._processes.new_ref()
        members: Any = (
            self.get_members(group) if group is not None
            else {g: self.get_members(g) for g in self.which_groups()}
        )
        return Subscription(self._hub, (self.scope, group), ref, members, limit)

    # -- selection and calls ---------------------------------------------------------

    def _load(self, pid: Pid) -> int:
        proc = self._processes.get(pid)
        return self._cluster.load(pid, proc.queue_len() if proc is not None else None)

    def select(self, group: str, *, strategy: str = DEFAULT_STRATEGY, key: Any = None,
               exclude: frozenset[Pid] | set[Pid] = frozenset()) -> Pid:
        """Pick one routable member of ``group``.

        Args:
            group: the group.
            strategy: ``"local_first"`` (default), ``"random"``,
                ``"round_robin"``, ``"least_loaded"`` or ``"hash"``.
            key: the routing key, required for ``"hash"``.
            exclude: members not to pick.

        Raises:
            BadArgument: unknown strategy, or ``"hash"`` without a key.
            NoMembers: no routable member is left.
        """
        # The fast path must still reject what check_group rejects: an empty
        # or oversized name is not a group (and is never a store key).
        if type(group) is not str or not 0 < len(group) <= 1024 or "\x00" in group:
            check_group(group)
        if type(strategy) is not str or strategy not in STRATEGIES:  # unhashable: no TypeError
            raise BadArgument("strategy", strategy, f"one of {sorted(STRATEGIES)}")
        table = self._table
        members, local = table.route(self.scope, group)
        if (strategy == "local_first" or strategy == "random") and not exclude:
            # The hot path (every group call's first attempt): the uniform
            # draw Random.randrange(n) makes, without its layers of calls.
            # Local members are always routable here: a subset of members.
            pool = local if local and strategy == "local_first" else members
            n = len(pool)
            if n:
                k = n.bit_length()
                getrandbits = self._getrandbits
                r = getrandbits(k)
                while r >= n:
                    r = getrandbits(k)
                return pool[r]
        key_hash = None
        counter = 0
        if strategy == "hash":
            if key is None:
                raise BadArgument("key", key, "a routing key when strategy='hash'")
            key_hash = key_digest(key)
        elif strategy == "round_robin":
            counter = table.next_round_robin(self.scope, group)
        pid = select(strategy, members, local=local, load=self._load, counter=counter,
                     key_hash=key_hash, exclude=exclude, rng=self._rng)
        if pid is None:
            raise NoMembers(self.scope, group, len(exclude))
        return pid

    async def call(self, group: str, request: Any, *, timeout: float = 5.0,
                   strategy: str = DEFAULT_STRATEGY, key: Any = None,
                   idempotent: bool = False, observe: Observer | None = None) -> Any:
        """Call one member of ``group``, retrying on another member when the
        request provably did not start (G3).

        Args:
            group: the group.
            request: the request.
            timeout: one deadline for all attempts, in seconds.
            strategy, key: as for :meth:`select`.
            idempotent: also retry when delivery is unknown (the member
                exited mid-call, its connection broke, its node fell silent).
            observe: called after each attempt with the member tried, the
                attempt's start and end (event-loop time) and its error (None
                when it answered): for failure tests (``shoal.testing``).

        Returns:
            The reply.

        Raises:
            NoMembers: no live member could take the request (when members
                died, only after waiting up to ``group_retry.REPLACEMENT_WAIT``
                seconds, within the deadline, for one to join in their place);
                when members were tried, its message and ``reasons`` say why they failed
                (a node that refused this node's authentication says so, and
                its other members are not tried in the same call).
            CallTimeout: the deadline passed.
            CallError, BadRequest: the member's handler raised or rejected it.
            ProcessExited, NodeDown: delivery unknown and not ``idempotent``.
            BadArgument: a bad argument, named; also a request that cannot
                be encoded for a member on another node (raised at once,
                not retried on other members).
        """
        seconds = check_timeout(timeout)
        return await self._messaging.counters.timed(GROUP, self._attempts(
            group, request, seconds, strategy, key, idempotent, observe))

    async def _attempts(self, group: str, request: Any, seconds: float, strategy: str,
                        key: Any, idempotent: bool, observe: Observer | None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        tried: set[Pid] = set()  # members failed, or on a node that refused this one
        failures: list[ShoalError] = []
        cluster = self._cluster
        while True:
            try:
                pid = self.select(group, strategy=strategy, key=key, exclude=tried)
            except NoMembers:
                if await wait_replaced(failures, self._table.members(self.scope, group),
                                       self._table.is_marked_dead, deadline - loop.time(),
                                       lambda: self.subscribe(group)):
                    continue  # group_retry Rule 2: a member joined in place of the dead
                if not failures:
                    raise
                raise no_members(self.scope, group, failures) from failures[-1]
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise CallTimeout(f"group {group!r}", seconds)
            cluster.call_started(pid)
            started = loop.time()
            try:
                value = await self._messaging.call(pid, request, remaining,
                                                   fail_if_silent=idempotent)
                if observe is not None:
                    observe(pid, started, loop.time(), None)
                return value
            except ShoalError as exc:
                if observe is not None:
                    observe(pid, started, loop.time(), exc)
                if not retryable(exc, idempotent):
                    raise
                tried.add(pid)
                failures.append(exc)
                if isinstance(exc, NodeDown) and exc.refused:
                    # Its node refused this node: none of its members can
                    # take the request, and dialling it again cannot help.
                    tried.update(p for p in self._table.members(self.scope, group)
                                 if p.node == exc.node)
            finally:
                cluster.call_ended(pid)

    def cast(self, group: str, request: Any, *, strategy: str = DEFAULT_STRATEGY,
             key: Any = None) -> Pid:
        """Cast ``request`` to one member; returns the member chosen.

        Raises:
            NoMembers: the group has no routable member.
            Overloaded: the chosen member's mailbox is full.
        """
        pid = self.select(group, strategy=strategy, key=key)
        self._messaging.cast(pid, request)
        return pid
