"""An invariant checker: a timeline of what happened, checked against G2 to G6.

A failure test records two kinds of facts on one monotonic clock:

- what callers saw: each group call (:meth:`Timeline.call_started`,
  :meth:`Timeline.call_ended`) and each attempt it made on a member
  (:meth:`Timeline.attempt`), with the outcome;
- what was true: when a node's death or hang was observable (the test
  killed or stopped it: :meth:`Timeline.node_down`), when it came back
  (:meth:`Timeline.node_up`), when an incarnation was replaced, when a
  process exited, which members a group had, what tools removed, which
  processes ran ``terminate`` in a graceful stop.

:func:`check` then reads the timeline and returns a :class:`Report`. Each
:class:`Violation` names the guarantee, the call or member, and the
timeline around it, so a failing test says what went wrong, not only that
something did. The checker is pure (no IO, no clock of its own): its tests
plant each kind of violation and assert the report names it.

Checks (bounds in :class:`Bounds`):

- G2: no attempt started on a member more than ``routing_bound`` after its
  node's death or hang was observable (while it stayed down).
- G3: no group call failed while a live member existed throughout it,
  except failures of unknown delivery (the callee's node died or the callee
  exited mid-call) of non-idempotent calls, counted apart as
  ``unknown_delivery``.
- G4: every process of a gracefully stopped node ran ``terminate``.
- G5: no live member was removed by a tool.
- G6: no call lasted longer than its deadline plus ``deadline_slack``.
- Incarnations: no reply came from a pid whose node's incarnation had
  already been replaced when the reply arrived.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

from shoal.pid import Pid

__all__ = ["Bounds", "CallRecord", "Report", "RollingCheck", "Timeline", "Violation", "check"]

Outcome = Literal["ok", "failed", "unknown"]
"""A call's or attempt's outcome: ``"unknown"`` is a failure whose delivery
is unknown (the request may have run: the node died or the callee exited
mid-call)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """How much lateness each check allows, in seconds."""

    routing_bound: float = 2.5
    """G2: a node's death must stop new attempts on it within this (the
    default heartbeat timeout of 2 s, plus margin)."""
    deadline_slack: float = 0.25
    """G6: how much past its deadline a call may end."""


@dataclass(slots=True, kw_only=True)
class AttemptRecord:
    pid: Pid
    start: float
    end: float | None = None
    outcome: Outcome | None = None
    replied_by: Pid | None = None


@dataclass(slots=True, kw_only=True)
class CallRecord:
    """One group call, as its caller saw it."""

    id: int
    group: str
    start: float
    deadline: float
    idempotent: bool
    end: float | None = None
    outcome: Outcome | None = None
    error: str = ""
    attempts: list[AttemptRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """One broken guarantee, with what is needed to find it in the logs."""

    guarantee: str
    what: str
    at: float
    timeline: tuple[str, ...]

    def __str__(self) -> str:
        lines = [f"{self.guarantee} violated at t={self.at:.3f}: {self.what}"]
        lines += [f"    {line}" for line in self.timeline]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The checker's verdict."""

    violations: list[Violation]
    calls: int
    failed: int
    unknown_delivery: int

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        lines = [f"calls: {self.calls}, failed: {self.failed} (of which unknown delivery "
                 f"of non-idempotent calls: {self.unknown_delivery})",
                 f"violations: {len(self.violations)}"]
        lines += [str(v) for v in self.violations]
        return "\n".join(lines)


class Timeline:
    """Facts and observations on one clock (see the module header).

    Bounded by the test that fills it: one record per call, attempt and
    fact; a soak that runs for hours checks its calls in parts with
    :class:`RollingCheck`, which drops them once checked.
    """

    def __init__(self) -> None:
        self.calls: dict[int, CallRecord] = {}
        # node name -> [(down_at, up_at or None, creation or None)]
        self.down: dict[str, list[tuple[float, float | None, int | None]]] = {}
        # node name -> [(creation, replaced_at)]
        self.replaced: dict[str, list[tuple[int, float]]] = {}
        self.exited: dict[Pid, float] = {}
        # group -> {pid: joined_at}
        self.members: dict[str, dict[Pid, float]] = {}
        self.removals: list[tuple[str, Pid, float, str]] = []
        self.graceful: dict[str, tuple[float, set[Pid], set[Pid]]] = {}
        self.events: list[tuple[float, str]] = []

    # -- what callers saw --------------------------------------------------------------

    def call_started(self, call_id: int, group: str, at: float, timeout: float, *,
                     idempotent: bool = False) -> None:
        self.calls[call_id] = CallRecord(id=call_id, group=group, start=at,
                                         deadline=at + timeout, idempotent=idempotent)

    def attempt(self, call_id: int, pid: Pid, start: float, end: float, outcome: Outcome,
                replied_by: Pid | None = None) -> None:
        """One try of a call on member ``pid``; ``replied_by`` is the pid the
        reply came from (normally ``pid``) for an ``"ok"`` outcome."""
        self.calls[call_id].attempts.append(AttemptRecord(
            pid=pid, start=start, end=end, outcome=outcome,
            replied_by=replied_by if replied_by is not None or outcome != "ok" else pid))

    def call_ended(self, call_id: int, at: float, outcome: Outcome, error: str = "") -> None:
        record = self.calls[call_id]
        record.end, record.outcome, record.error = at, outcome, error

    # -- what was true -------------------------------------------------------------------

    def node_down(self, name: str, at: float, why: str = "killed", *,
                  creation: int | None = None) -> None:
        """From ``at``, node ``name`` is dead or hung, observably (a kill -9,
        a SIGSTOP, a partition from the callers).

        With ``creation``, only that incarnation (and older ones) is down: a
        newer incarnation started under the name (a restart) serves as soon
        as it is registered, whatever the test recorded after. Without it,
        every incarnation of the name is down until :meth:`node_up`."""
        self.down.setdefault(name, []).append((at, None, creation))
        self.events.append((at, f"node {name} down ({why})"))

    def node_up(self, name: str, at: float) -> None:
        """Node ``name`` serves again (SIGCONT, a healed partition, a restart)."""
        spans = self.down.get(name)
        if spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], at, spans[-1][2])
        self.events.append((at, f"node {name} up"))

    def incarnation_replaced(self, name: str, creation: int, at: float) -> None:
        """Incarnation ``creation`` of ``name`` was replaced by a newer one at ``at``."""
        self.replaced.setdefault(name, []).append((creation, at))
        self.events.append((at, f"node {name} incarnation {creation} replaced"))

    def process_exited(self, pid: Pid, at: float) -> None:
        self.exited[pid] = at
        self.events.append((at, f"{pid} exited"))

    def joined(self, group: str, pid: Pid, at: float) -> None:
        self.members.setdefault(group, {})[pid] = at

    def removed_by_tool(self, group: str, pid: Pid, at: float, tool: str) -> None:
        self.removals.append((group, pid, at, tool))
        self.events.append((at, f"{tool} removed {pid} from {group}"))

    def graceful_stop(self, name: str, at: float, processes: set[Pid],
                      terminated: set[Pid]) -> None:
        """Node ``name`` was stopped gracefully at ``at``; ``terminated`` are
        the processes that ran ``terminate``."""
        self.graceful[name] = (at, set(processes), set(terminated))
        self.events.append((at, f"node {name} stopped gracefully"))

    # -- truth at an instant -------------------------------------------------------------

    def down_since(self, name: str, at: float, creation: int | None = None) -> float | None:
        """When the node's current down span began, if it is down at ``at``
        (for incarnation ``creation``, when given: a span recorded for an
        older incarnation does not cover a newer one)."""
        for start, end, down in self.down.get(name, []):
            if creation is not None and down is not None and creation > down:
                continue
            if start <= at and (end is None or at < end):
                return start
        return None

    def alive(self, pid: Pid, at: float) -> bool:
        """Whether ``pid`` could serve at ``at``: not exited, its node not
        down, its incarnation not replaced."""
        exited = self.exited.get(pid)
        if exited is not None and exited <= at:
            return False
        if self.down_since(pid.node, at, pid.creation) is not None:
            return False
        return all(not (creation == pid.creation and when <= at)
                   for creation, when in self.replaced.get(pid.node, []))

    def replaced_at(self, pid: Pid) -> float | None:
        for creation, when in self.replaced.get(pid.node, []):
            if creation == pid.creation:
                return when
        return None

    def around(self, at: float, span: float = 2.0, since: float | None = None
               ) -> tuple[str, ...]:
        """The facts from ``span`` seconds before ``at`` (or from ``since``,
        if earlier) to ``span`` seconds after it, in order."""
        first = at - span if since is None else min(at - span, since)
        return tuple(f"t={t:.3f} {what}" for t, what in sorted(self.events)
                     if first <= t <= at + span)


def _live_throughout(timeline: Timeline, group: str, start: float, end: float) -> list[Pid]:
    """Members of ``group`` that were alive for the whole of [start, end]."""
    live = []
    for pid, joined in timeline.members.get(group, {}).items():
        if joined > start:
            continue
        points = [start, end, *(t for t, _ in timeline.events if start <= t <= end)]
        if all(timeline.alive(pid, t) for t in points):
            live.append(pid)
    return live


def check(timeline: Timeline, bounds: Bounds | None = None) -> Report:
    """Check ``timeline`` against the guarantees (see the module header)."""
    bounds = bounds or Bounds()
    violations: list[Violation] = []
    failed = unknown = 0
    for call in sorted(timeline.calls.values(), key=lambda c: c.start):
        end = call.end if call.end is not None else call.start
        for attempt in call.attempts:
            since = timeline.down_since(attempt.pid.node, attempt.start, attempt.pid.creation)
            if since is not None and attempt.start - since > bounds.routing_bound:
                violations.append(Violation(
                    guarantee="G2", at=attempt.start,
                    what=f"call {call.id} to {call.group!r} tried {attempt.pid} "
                         f"{attempt.start - since:.3f}s after its node went down "
                         f"(bound {bounds.routing_bound}s)",
                    timeline=timeline.around(attempt.start, since=since)))
            replier = attempt.replied_by
            if attempt.outcome == "ok" and replier is not None and attempt.end is not None:
                when = timeline.replaced_at(replier)
                if when is not None and when < attempt.end:
                    violations.append(Violation(
                        guarantee="incarnation", at=attempt.end,
                        what=f"call {call.id} took a reply from {replier}, whose "
                             f"incarnation was replaced {attempt.end - when:.3f}s earlier",
                        timeline=timeline.around(attempt.end, since=when)))
        if call.end is not None and call.end - call.deadline > bounds.deadline_slack:
            violations.append(Violation(
                guarantee="G6", at=call.end,
                what=f"call {call.id} to {call.group!r} ended "
                     f"{call.end - call.deadline:.3f}s past its deadline",
                timeline=timeline.around(call.end)))
        if call.outcome in ("failed", "unknown"):
            failed += 1
            if call.outcome == "unknown" and not call.idempotent:
                unknown += 1
                continue
            live = _live_throughout(timeline, call.group, call.start, end)
            if live:
                violations.append(Violation(
                    guarantee="G3", at=end,
                    what=f"call {call.id} to {call.group!r} failed ({call.error}) while "
                         f"{len(live)} live member(s) existed, e.g. {live[0]}",
                    timeline=timeline.around(end)))
    for group, pid, at, tool in timeline.removals:
        if timeline.alive(pid, at):
            violations.append(Violation(
                guarantee="G5", at=at, what=f"{tool} removed live member {pid} from {group!r}",
                timeline=timeline.around(at)))
    for name, (at, processes, terminated) in sorted(timeline.graceful.items()):
        missing = sorted(processes - terminated)
        if missing:
            violations.append(Violation(
                guarantee="G4", at=at,
                what=f"node {name} stopped gracefully but {len(missing)} process(es) did not "
                     f"run terminate: {', '.join(map(str, missing[:5]))}",
                timeline=timeline.around(at)))
    violations.sort(key=lambda v: v.at)
    return Report(violations=violations, calls=len(timeline.calls), failed=failed,
                  unknown_delivery=unknown)


class RollingCheck:
    """The verdict on a long run's timeline, checked in parts to bound its memory.

    :meth:`settle` checks the calls that ended before an instant against
    every fact recorded so far and drops them from the timeline (settle
    only calls that ended a while ago: a fact about their span, such as an
    exit, may be recorded a moment late). Facts stay: one per fault, not
    per call. :meth:`report` checks the calls left and the facts-only
    guarantees (G4, G5) once, and returns the verdict on the whole run,
    the same as :func:`check` on the whole timeline would.
    """

    def __init__(self, timeline: Timeline, bounds: Bounds | None = None) -> None:
        self.timeline, self.bounds = timeline, bounds
        self._violations: list[Violation] = []
        self._calls = self._failed = self._unknown = 0

    def _add(self, report: Report) -> None:
        self._violations += report.violations
        self._calls += report.calls
        self._failed += report.failed
        self._unknown += report.unknown_delivery

    def settle(self, before: float) -> None:
        """Check and drop the calls that ended before ``before``."""
        calls = self.timeline.calls
        done = {i: c for i, c in calls.items() if c.end is not None and c.end < before}
        if not done:
            return
        part = copy.copy(self.timeline)
        part.calls, part.removals, part.graceful = done, [], {}
        self._add(check(part, self.bounds))
        for call_id in done:
            del calls[call_id]

    def report(self) -> Report:
        """The verdict on the whole run (the calls not settled checked now)."""
        self._add(check(self.timeline, self.bounds))
        violations = sorted(self._violations, key=lambda v: v.at)
        self._violations = []
        report = Report(violations=violations, calls=self._calls, failed=self._failed,
                        unknown_delivery=self._unknown)
        self._calls = self._failed = self._unknown = 0
        return report
