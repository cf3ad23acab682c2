"""``shoal deploy``: restart a cluster's nodes a few at a time, each behind a health gate.

Owns the deploy's steps. For each node, in the planned order and at most
``max_unavailable`` at once: check ``--min-available`` (enough live
members would remain in each named group), :func:`drain_step` (the admin
drain of ``operate.drain``: the node leaves its groups, finishes its
calls and exits 0), :func:`restart_step` (ask the running ``shoal up`` to
start it again over its control listener, or run the user's restart
command), then :func:`gate` (the new incarnation is registered, its
processes have rejoined every group the old one was in, as many times, it
answers an admin ping, and the optional health call succeeds).

Rules:

- Rule 1: the first failure stops the deploy. Nodes not yet begun are left
  untouched; the result names the node, the step and why.
- Rule 2: group counts come from the store (``inspect.read_cluster``: only
  entries of live incarnations), keyed by (scope, group); the new
  incarnation passes when it has at least as many memberships in each as
  the old one had just before its drain.
- Rule 3: every wait is bounded by ``gate_timeout`` (the drain by
  ``drain_timeout``); the store is polled every :data:`POLL_INTERVAL`, as
  ``operate.drain`` does, because no event tells a short-lived node that
  another node's registration changed.
"""

from __future__ import annotations

import asyncio
import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import shoal
from shoal.cli.inspect import read_cluster
from shoal.cli.operate import UnknownTarget, drain, ping
from shoal.cli.upstate import control

__all__ = ["POLL_INTERVAL", "DeployPlan", "GateFailed", "NodeResult", "deploy", "drain_step",
           "gate", "restart_step"]

POLL_INTERVAL = 0.05  # seconds between looks at the store during a gate
_MAX_OUTPUT = 64 * 1024  # bytes of a restart command's output shown

Counts = dict[str, int]  # "scope/group" -> memberships of one incarnation


class GateFailed(shoal.ShoalError):
    """A step of one node's deploy failed; ``step`` says which."""

    def __init__(self, step: str, reason: str) -> None:
        # One line: a remote CallError carries the callee's traceback after it.
        self.step, self.reason = step, (reason.splitlines() or [""])[0]
        super().__init__(self.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeployPlan:
    """Which nodes, in which order, restarted how, gated how."""

    nodes: list[str]
    max_unavailable: int
    restart_via: str
    """"shoal-up" or "command"."""
    restart_cmd: str | None
    up_pid: int | None
    scope: str
    min_available: dict[str, int]
    health_call: tuple[str, Any] | None
    gate_timeout: float
    drain_timeout: float

    @property
    def batches(self) -> list[list[str]]:
        step = self.max_unavailable
        return [self.nodes[i:i + step] for i in range(0, len(self.nodes), step)]

    def as_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "batches": self.batches,
                "max_unavailable": self.max_unavailable, "restart_via": self.restart_via,
                "restart_cmd": self.restart_cmd, "up_pid": self.up_pid, "scope": self.scope,
                "min_available": self.min_available,
                "health_call": None if self.health_call is None else
                {"group": self.health_call[0], "request": self.health_call[1]},
                "gate_timeout_s": self.gate_timeout, "drain_timeout_s": self.drain_timeout}

    def text(self) -> str:
        how = (f"asking shoal up (pid {self.up_pid}) to start it again"
               if self.restart_via == "shoal-up" else f"running {self.restart_cmd!r}")
        lines = [f"plan: restart {len(self.nodes)} node(s), {self.max_unavailable} at a time, "
                 f"in this order: {', '.join(self.nodes)}",
                 f"  each: drain, restart ({how}), then a health gate within "
                 f"{self.gate_timeout:g}s: registered again, rejoined its groups, answers "
                 "ping" + (f", health call to {self.health_call[0]!r} succeeds"
                           if self.health_call else "")]
        lines += [f"  before each drain: at least {n} live member(s) left in "
                  f"{self.scope}/{group}" for group, n in sorted(self.min_available.items())]
        return "\n".join(lines)


@dataclass(slots=True, kw_only=True)
class NodeResult:
    """What happened to one node."""

    node: str
    ok: bool = False
    step: str = "check"
    reason: str | None = None
    old_creation: int | None = None
    new_creation: int | None = None
    groups: dict[str, list[int]] = field(default_factory=dict)
    drained: dict[str, Any] | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "ok": self.ok, "step": self.step, "reason": self.reason,
                "old_creation": self.old_creation, "new_creation": self.new_creation,
                "groups": self.groups, "drained": self.drained, "seconds": self.seconds}


Echo = Callable[[str], None]


async def _counts(store: str | None, cluster: str | None, name: str, creation: int
                  ) -> Counts:
    view = await read_cluster(store, cluster)
    counts: Counts = {}
    for (scope, group), entries in view.members.items():
        total = sum(c for p, c in entries if p.node == name and p.creation == creation)
        if total:
            counts[f"{scope}/{group}"] = total
    return counts


def _live(node: shoal.Node, scope: str, group: str, leaving: list[str]) -> int:
    view = node.cluster_view
    return len({p for p in node.scope(scope).get_members(group)
                if p.node not in leaving and view.is_routable(p.node)})


async def check_min_available(node: shoal.Node, plan: DeployPlan, batch: list[str]) -> None:
    """Enough live members would remain in each ``--min-available`` group
    with ``batch`` down; waits up to the gate timeout for a node just
    restarted to be seen.

    Raises:
        GateFailed: (step "check") a group would drop below its minimum.
    """
    deadline = time.monotonic() + plan.gate_timeout
    for group, minimum in sorted(plan.min_available.items()):
        while (left := _live(node, plan.scope, group, batch)) < minimum:
            if time.monotonic() > deadline:
                raise GateFailed("check", f"draining {', '.join(batch)} would leave "
                                          f"{left} live member(s) in {plan.scope}/{group}, "
                                          f"fewer than --min-available {minimum}; refused")
            await asyncio.sleep(POLL_INTERVAL)


async def drain_step(node: shoal.Node, name: str, timeout: float) -> dict[str, Any]:
    """Drain node ``name`` (``operate.drain``) and wait until it is out."""
    try:
        return await drain(node, name, timeout)
    except shoal.ShoalError as exc:
        raise GateFailed("drain", f"drain failed: {exc}") from None


async def restart_step(plan: DeployPlan, up_state: dict[str, Any] | None, name: str,
                       echo: Echo) -> None:
    """Start node ``name`` again: through ``shoal up``, or the restart command."""
    timeout = plan.gate_timeout
    if plan.restart_via == "shoal-up":
        assert up_state is not None
        try:
            await control(up_state, {"op": "restart", "node": name, "drained": True,
                                     "timeout": timeout},
                          timeout + float(up_state.get("stop_timeout_s", 30)) + 5)
        except shoal.ShoalError as exc:
            raise GateFailed("restart", f"restart failed: {exc}") from None
        return
    assert plan.restart_cmd is not None
    command = plan.restart_cmd.replace("{node}", shlex.quote(name))
    # Its output goes to a file, not a pipe: a process the command leaves
    # running in the background would hold a pipe open, and us waiting.
    with tempfile.TemporaryFile() as output:
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output)
        try:
            code = await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise GateFailed("restart", f"restart command {command!r} still running after "
                                        f"{timeout:g}s; killed") from None
        output.seek(0)
        lines = output.read(_MAX_OUTPUT).decode(errors="replace").splitlines()
    for line in lines:
        echo(f"{name}: restart command: {line}")
    if code != 0:
        raise GateFailed("restart", f"restart command {command!r} exited with status {code}"
                                    + (f": {lines[-1]}" if lines else ""))


async def gate(node: shoal.Node, plan: DeployPlan, result: NodeResult, old: Counts, *,
               store: str | None, cluster: str | None) -> None:
    """The health gate of one restarted node (module header).

    Raises:
        GateFailed: (step "gate") a check failed within the gate timeout.
    """
    name, old_creation = result.node, result.old_creation
    deadline = time.monotonic() + plan.gate_timeout

    def left() -> float:
        return max(deadline - time.monotonic(), POLL_INTERVAL)

    view = node.cluster_view
    while (peer := view.peer(name)) is None or peer.creation == old_creation \
            or not view.is_routable(name):
        if time.monotonic() > deadline:
            raise GateFailed("gate", f"not registered again within {plan.gate_timeout:g}s "
                                     "of its restart")
        await asyncio.sleep(POLL_INTERVAL)
    result.new_creation = creation = peer.creation
    while True:
        new = await _counts(store, cluster, name, creation)
        result.groups = {g: [n, new.get(g, 0)] for g, n in sorted(old.items())}
        missing = {g: pair for g, pair in result.groups.items() if pair[1] < pair[0]}
        if not missing:
            break
        if time.monotonic() > deadline:
            raise GateFailed("gate", f"did not rejoin its groups within "
                                     f"{plan.gate_timeout:g}s: " + ", ".join(
                                         f"{g} {n} of {o}" for g, (o, n) in missing.items()))
        await asyncio.sleep(POLL_INTERVAL)
    try:
        answer = await ping(node, name, left())
    except shoal.ShoalError as exc:
        raise GateFailed("gate", f"no answer to admin ping: {exc}") from None
    if answer.get("creation") != creation:
        raise GateFailed("gate", f"admin ping answered by creation {answer.get('creation')}, "
                                 f"not {creation}")
    if plan.health_call is not None:
        await _health(node, plan, name, creation, left)


async def _health(node: shoal.Node, plan: DeployPlan, name: str, creation: int,
                  left: Callable[[], float]) -> None:
    assert plan.health_call is not None
    group, request = plan.health_call
    members = sorted({p for p in node.scope(plan.scope).get_members(group)
                      if p.node == name and p.creation == creation})
    while not members:  # the store has them (the rejoin check); this node's view follows
        if left() <= POLL_INTERVAL:
            raise GateFailed("gate", f"health call: no member of {plan.scope}/{group} on the "
                                     "new incarnation")
        await asyncio.sleep(POLL_INTERVAL)
        members = sorted({p for p in node.scope(plan.scope).get_members(group)
                          if p.node == name and p.creation == creation})
    for pid in members:
        try:
            await node.call(pid, request, left())
        except shoal.ShoalError as exc:
            raise GateFailed("gate", f"health call to {pid} failed: {exc}") from None


async def _one(node: shoal.Node, plan: DeployPlan, up_state: dict[str, Any] | None,
               result: NodeResult, *, store: str | None, cluster: str | None,
               echo: Echo) -> None:
    name, started = result.node, time.monotonic()
    try:
        peer = node.cluster_view.peer(name)
        if peer is None or not node.cluster_view.is_routable(name):
            raise GateFailed("check", f"node {name} is not live; nothing was changed on it")
        result.old_creation = peer.creation
        old = await _counts(store, cluster, name, peer.creation)
        result.step = "drain"
        echo(f"{name}: draining (creation {peer.creation}, "
             f"{sum(old.values())} membership(s) in {len(old)} group(s))")
        result.drained = await drain_step(node, name, plan.drain_timeout)
        result.step = "restart"
        echo(f"{name}: drained in {result.drained.get('out_after_s')}s; restarting")
        await restart_step(plan, up_state, name, echo)
        result.step = "gate"
        await gate(node, plan, result, old, store=store, cluster=cluster)
        result.ok = True
        echo(f"{name}: gate passed: creation {result.new_creation}, groups rejoined "
             + (", ".join(f"{g} {n}/{o}" for g, (o, n) in result.groups.items()) or "(none)"))
    except GateFailed as exc:
        result.step, result.reason = exc.step, exc.reason
    finally:
        result.seconds = round(time.monotonic() - started, 3)


async def deploy(node: shoal.Node, plan: DeployPlan, up_state: dict[str, Any] | None, *,
                 store: str | None, cluster: str | None, echo: Echo) -> list[NodeResult]:
    """Carry out ``plan`` from the short-lived ``node``; one result per node begun.

    Stops at the first failed node (Rule 1): the results end with it.

    Raises:
        UnknownTarget: a planned node is not live when the deploy begins.
    """
    for name in plan.nodes:
        if node.cluster_view.peer(name) is None:
            raise UnknownTarget(f"node {name} is not live; start it before deploying "
                                "(nothing was changed)")
    await node.open_scope(plan.scope)  # the CLI's node follows only the scopes it opens
    results: list[NodeResult] = []
    for batch in plan.batches:
        try:
            await check_min_available(node, plan, batch)
        except GateFailed as exc:
            results += [NodeResult(node=name, step=exc.step, reason=exc.reason)
                        for name in batch]
            return results
        batch_results = [NodeResult(node=name) for name in batch]
        await asyncio.gather(*(_one(node, plan, up_state, r, store=store, cluster=cluster,
                                    echo=echo) for r in batch_results))
        results += batch_results
        if not all(r.ok for r in batch_results):
            return results
    return results
