"""The member registrations of one gateway (``docs/gateway.md`` section 5).

Owns: every :class:`Registration` of the gateway (id -> registration), each
with its proxy process (``proxy.py``), its TTL timer, its drain and the task
that waits for the proxy's exit; and the gateway's :class:`CallbackClient`.

Rules:

- Rule 1 (bounded, pruned): at most ``limit`` registrations (default
  :data:`MAX_REGISTRATIONS`, env ``SHOAL_GATEWAY_MAX_MEMBERS``) exist or
  are being made; one more is ``503 overloaded`` (retry-safe). A
  registration is removed the moment its proxy's exit is known, whatever
  ended it (stream closed, TTL lapsed, drained, callback gone, killed,
  node stopping); its id is then ``404``.
- Rule 2 (one exit path): a registration ends only by its proxy's exit.
  :meth:`Registry.end` sends the proxy an exit signal; the exit path takes
  it out of its group (G1); the watcher then closes its forwarder (for a
  kill, which skips ``terminate``), removes the registration and resolves
  its ``exited`` future with the reason.
- Rule 3 (TTL): a TTL registration's proxy exits (``ttl_lapsed``) when
  :meth:`Registry.renew` was not called within ``ttl`` seconds of the last
  renewal; renewal never revives an ended one.
- Rule 4 (drain): :meth:`Registry.drain` takes the proxy out of its group
  and its name first, lets the calls it took finish (each within its
  deadline), then ends it (``shutdown``) and answers how many there were.
  While draining, neither the TTL nor a closed stream cuts it short; a
  second drain waits for the first.
- Rule 5 (node stop): the node stops its processes one after the other;
  the proxies' drains on ``shutdown`` (``proxy.py`` Rule 4) all end within
  one ``proxy.SHUTDOWN_DRAIN`` window from the first one's, so a stop is
  not held that long once per registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from shoal.errors import CallError, CallTimeout, NameInUse
from shoal.gateway import proxy
from shoal.gateway.callback import CallbackClient
from shoal.gateway.errors import GatewayError
from shoal.gateway.proxy import EXIT_DRAINED, EXIT_TTL_LAPSED, Forwarder, MemberProxy
from shoal.pid import KILLED, Pid, Reason
from shoal.runtime.checks import MAX_TIMEOUT, env_int

if TYPE_CHECKING:
    from shoal.gateway.context import GatewayNode
    from shoal.gateway.member_spec import MemberSpec

__all__ = ["MAX_REGISTRATIONS", "Registration", "Registry", "limit_from_env"]

MAX_REGISTRATIONS: Final = 1024
"""Registrations one gateway holds at most, unless ``SHOAL_GATEWAY_MAX_MEMBERS`` says."""


def limit_from_env() -> int:
    """``SHOAL_GATEWAY_MAX_MEMBERS`` (an integer >= 1), else :data:`MAX_REGISTRATIONS`.

    Raises:
        BadArgument: the variable is set to anything else.
    """
    return env_int("SHOAL_GATEWAY_MAX_MEMBERS", MAX_REGISTRATIONS, 1)


class Registration:
    """One registered member: its spec, its proxy, how it lives and ends."""

    def __init__(self, reg_id: str, spec: MemberSpec, pid: Pid, forwarder: Forwarder) -> None:
        self.id = reg_id
        self.spec = spec
        self.pid = pid
        self.forwarder = forwarder
        # Resolved with the proxy's exit reason once it is dead (Rule 2).
        self.exited: asyncio.Future[Reason] = asyncio.get_running_loop().create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.drain_task: asyncio.Task[int] | None = None
        self.watcher: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self.drain_task is not None

    def answer(self) -> dict[str, object]:
        """The body of a TTL registration's answer (``201`` and renewals)."""
        return {"id": self.id, "pid": self.pid, "ttl": self.spec.ttl}


class Registry:
    """The registrations of one gateway (see the module header).

    Args:
        node: the gateway's node, where proxies run.
        client: the HTTP client the proxies post with.
        timed_out: counts a callback given up at a call's deadline.
        limit: the most registrations held at once (Rule 1).
    """

    def __init__(self, node: GatewayNode, client: CallbackClient, timed_out: Callable[[], None],
                 limit: int = MAX_REGISTRATIONS) -> None:
        self._node = node
        self.client = client
        self._timed_out = timed_out
        self.limit = limit
        # Invariant: the registrations whose proxy is alive (Rule 1).
        self._regs: dict[str, Registration] = {}
        # Invariant: registrations being made now (counted against the limit).
        self._making = 0
        # Set once, when the first proxy drains on its node's stop (Rule 5).
        self._stopping_until: float | None = None

    def __len__(self) -> int:
        return len(self._regs)

    def get(self, reg_id: str) -> Registration:
        """The live registration ``reg_id``.

        Raises:
            GatewayError: ``404 not_found``.
        """
        reg = self._regs.get(reg_id)
        if reg is None:
            raise GatewayError(404, "not_found", f"no registration {reg_id!r} (it ended, "
                               "or never existed)", True)
        return reg

    async def register(self, spec: MemberSpec) -> Registration:
        """Start a proxy for ``spec``.

        Raises:
            GatewayError: ``503 overloaded`` at the limit; ``400 bad_request``
                when ``name`` is taken.
        """
        if len(self._regs) + self._making >= self.limit:
            raise GatewayError(503, "overloaded", f"this gateway holds its maximum of "
                               f"{self.limit} registrations (SHOAL_GATEWAY_MAX_MEMBERS)", True)
        self._making += 1
        making = asyncio.ensure_future(self._make(spec))
        try:
            return await asyncio.shield(making)
        except asyncio.CancelledError:
            # The client went away while its proxy started: end it once started.
            making.add_done_callback(self._abandoned)
            raise

    def _abandoned(self, making: asyncio.Future[Registration]) -> None:
        if not making.cancelled() and making.exception() is None:
            self.end(making.result(), "registration_abandoned")

    async def _make(self, spec: MemberSpec) -> Registration:
        try:
            reg_id = secrets.token_urlsafe(12)
            forwarder = Forwarder(spec, reg_id, self.client, self._timed_out,
                                  self._drain_until)
            if spec.name is not None and self._node.whereis(spec.name) is not None:
                raise GatewayError(400, "bad_request", f"name: {spec.name!r} is registered "
                                   "on this node already", True)
            try:
                pid = await self._node.spawn(MemberProxy, forwarder)
            except CallError as exc:  # its init raised: the name was taken meanwhile
                if exc.remote_type != f"{NameInUse.__module__}.{NameInUse.__qualname__}":
                    raise
                raise GatewayError(400, "bad_request", f"name: {exc.remote_message}",
                                   True) from None
            reg = Registration(reg_id, spec, pid, forwarder)
            self._regs[reg_id] = reg
            reg.watcher = asyncio.create_task(self._watch(reg))
            if spec.ttl is not None:
                self._arm(reg)
            return reg
        finally:
            self._making -= 1

    async def _watch(self, reg: Registration) -> None:
        reason: Reason = KILLED  # what the gateway's own end (cancelled) leaves
        try:
            while True:
                try:
                    reason = await self._node.wait_exit(reg.pid, MAX_TIMEOUT)
                    break
                except CallTimeout:
                    continue  # alive for a year (the longest wait): wait on
        finally:
            reg.forwarder.close(reason)
            if reg.timer is not None:
                reg.timer.cancel()
            self._regs.pop(reg.id, None)
            if not reg.exited.done():
                reg.exited.set_result(reason)

    def _drain_until(self) -> float:
        """Rule 5: until when a proxy stopping with ``shutdown`` lets its calls finish."""
        now = asyncio.get_running_loop().time()
        if not self._node.stopping:
            return now + proxy.SHUTDOWN_DRAIN
        if self._stopping_until is None:
            self._stopping_until = now + proxy.SHUTDOWN_DRAIN
        return self._stopping_until

    def _arm(self, reg: Registration) -> None:
        ttl = reg.spec.ttl
        assert ttl is not None
        if reg.timer is not None:
            reg.timer.cancel()
        reg.timer = asyncio.get_running_loop().call_later(ttl, self._lapse, reg)

    def _lapse(self, reg: Registration) -> None:
        reg.timer = None
        if not reg.draining:
            self.end(reg, EXIT_TTL_LAPSED)

    def renew(self, reg_id: str) -> Registration:
        """Rule 3: the TTL starts again from now.

        Raises:
            GatewayError: ``404`` for no such live registration; ``400`` for
                a stream registration (it lives with its stream).
        """
        reg = self.get(reg_id)
        if reg.spec.ttl is None:
            raise GatewayError(400, "bad_request", f"registration {reg_id!r} lives with its "
                               "stream; only a TTL registration is renewed", True)
        if not reg.draining:
            self._arm(reg)
        return reg

    def end(self, reg: Registration, reason: Reason) -> None:
        """Rule 2: stop the proxy now (not while it drains, Rule 4)."""
        if reg.draining or reg.exited.done():
            return
        self._node.exit(reg.pid, reason)

    async def drain(self, reg_id: str) -> int:
        """Rule 4: the number of calls the proxy let finish before it exited.

        Raises:
            GatewayError: ``404`` for no such live registration.
        """
        reg = self.get(reg_id)
        if reg.drain_task is None:
            reg.drain_task = asyncio.create_task(self._drain(reg))
        return await asyncio.shield(reg.drain_task)

    async def _drain(self, reg: Registration) -> int:
        if reg.timer is not None:
            reg.timer.cancel()
            reg.timer = None
        spec = reg.spec
        node = self._node
        await node.scope(spec.scope).leave(spec.group, reg.pid)
        if spec.name is not None and node.whereis(spec.name) == reg.pid:
            node.unregister(spec.name)
        count, idle = reg.forwarder.drain()
        await idle
        if not reg.exited.done():
            node.exit(reg.pid, EXIT_DRAINED)
        await asyncio.shield(reg.exited)
        return count

    async def close(self) -> None:
        """The gateway stops: end every proxy, wait for their exits, close the client."""
        regs = list(self._regs.values())
        for reg in regs:
            if not reg.exited.done():
                self._node.exit(reg.pid, EXIT_DRAINED)
        watchers = [reg.watcher for reg in regs if reg.watcher is not None]
        if watchers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MemberProxy.shutdown_timeout + 1):
                    await asyncio.gather(*watchers, return_exceptions=True)
        await self.client.close()
