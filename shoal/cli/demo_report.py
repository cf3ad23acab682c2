"""What ``shoal demo`` measured, and its end report, as plain values.

Owns :class:`DemoResult` (the figures of one run, in seconds since the
callers started) and the three ways it is shown: :func:`report_lines` (the
end report a person reads, whose last line is the checker's verdict
``violations: N``), :func:`to_json` (``--json``), and :func:`exit_code`.

Rules:

- Rule 1: the verdict is the invariant checker's, not the demo's opinion;
  the demo adds one condition: every failed call is explained, i.e. is an
  unknown-delivery failure of a non-idempotent call (the one failure kind
  the fix cannot prevent: the request may have run, so only its caller can
  decide to retry). And a third: the callers' node's ``/metrics`` counted
  the same calls as the callers (``demo_metrics.py``), so what an operator's
  dashboard shows is what the demo reports. Exit 0 only when all hold.
- Rule 2: this module computes nothing from a cluster; the orchestration
  (``shoal/cli/demo.py``) fills a result, the display, the plot and the
  tests read it, so each can be tested with a result made by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shoal.cli.demo_metrics import DemoMetrics

__all__ = ["DemoFault", "DemoResult", "DemoSecond", "exit_code", "report_lines", "to_json"]

EXIT_PASSED, EXIT_FAILED = 0, 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSecond:
    """One second of load, ``t`` seconds after the callers started."""

    t: float
    ok: int
    failed: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoFault:
    """One fault the demo injected (or tool it ran), in seconds since the
    callers started."""

    kind: str
    """``kill``, ``restart``, ``hang``, ``crash``, ``deploy`` or ``reap``."""
    node: str | None
    start: float
    end: float
    detail: str
    excluded_after: float | None = None
    """Seconds from the fault until the callers' node stopped routing to
    the node (kill and hang only; None: not measured or never excluded)."""

    @property
    def label(self) -> str:
        """A short name for a display or a plot: ``kill -9 n1``."""
        names = {"kill": "kill -9", "hang": "hang", "restart": "restart", "crash": "crash",
                 "deploy": "rolling deploy", "reap": "reap"}
        name = names.get(self.kind, self.kind)
        return f"{name} {self.node}" if self.node else name


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    """The figures of one ``shoal demo`` run (see the module header)."""

    nodes: tuple[str, ...]
    callers: int
    idempotent: bool
    seconds: float
    """Wall time of the whole run, start-up and shut-down included."""
    ok: int
    failed: int
    """Every failed call, the ``unknown`` ones included."""
    unknown: int
    """Failed calls whose delivery is unknown and that were not idempotent."""
    retried: int
    """Calls that needed more than one attempt (and then succeeded or not)."""
    p50_ms: float
    p99_ms: float
    failures_by_error: dict[str, int] = field(default_factory=dict)
    per_second: tuple[DemoSecond, ...] = ()
    faults: tuple[DemoFault, ...] = ()
    violations: tuple[str, ...] = ()
    """Each violation the checker reported, as it prints it."""
    os_pids: dict[str, list[int]] = field(default_factory=dict)
    """Every OS process id each node ran under, in order (restarts add one)."""
    metrics: DemoMetrics | None = None
    """The callers' node's own count of the calls, read from its ``/metrics``
    at the end (None: the demo served no ``/metrics``)."""

    @property
    def metrics_agree(self) -> bool:
        """Whether ``/metrics`` counted the calls the callers counted (True
        when there was no endpoint to read)."""
        return self.metrics is None or self.metrics.agrees(self.ok, self.failed)

    @property
    def unexplained(self) -> int:
        """Failed calls other than unknown-delivery non-idempotent ones."""
        return self.failed - self.unknown

    @property
    def passed(self) -> bool:
        return not self.violations and self.unexplained == 0 and self.metrics_agree


def exit_code(result: DemoResult) -> int:
    """0 when the run passed (Rule 1), else 1."""
    return EXIT_PASSED if result.passed else EXIT_FAILED


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def _exclusions(result: DemoResult) -> str:
    parts = []
    for fault in result.faults:
        if fault.kind not in ("kill", "hang"):
            continue
        how = "kill -9" if fault.kind == "kill" else "hung by SIGSTOP"
        after = ("not excluded while the fault lasted" if fault.excluded_after is None
                 else f"{fault.excluded_after:.3f} s")
        parts.append(f"{fault.node} ({how}) {after}")
    return "; ".join(parts) or "no node was killed or hung"


def _unknown_line(result: DemoResult) -> str:
    if result.idempotent:
        return (f"{result.unknown}: the calls are marked idempotent (a worker's request has no "
                "side effects), so one in flight on a killed node is retried on another; "
                "a non-idempotent one would fail there with delivery unknown")
    return (f"{result.unknown}: non-idempotent calls in flight on a killed node or worker fail "
            "with delivery unknown (the request may have run), the one failure kind the fix "
            "cannot prevent; only their caller can decide to retry them")


def _metrics_line(result: DemoResult, metrics: DemoMetrics) -> str:
    if metrics.error:
        return f"{metrics.url} could not be read: {metrics.error}"
    counted = f"{metrics.ok:,} ok, {metrics.failed:,} failed, {metrics.timed:,} timed"
    if metrics.agrees(result.ok, result.failed):
        return f"{metrics.url} counted the same group calls ({counted})"
    return (f"{metrics.url} counted {counted}: NOT the {result.ok:,} ok and "
            f"{result.failed:,} failed the callers counted")


def report_lines(result: DemoResult) -> list[str]:
    """The end report; its last line is ``violations: N`` (Rule 1)."""
    reaps = [f for f in result.faults if f.kind == "reap"]
    calls = result.ok + result.failed
    lines = [
        f"== report: {len(result.nodes)} nodes, {result.callers} callers, "
        f"{result.seconds:.1f} s",
        f"calls            {calls:,} made: {result.ok:,} ok, {result.failed:,} failed, "
        f"{result.retried:,} retried on another member",
        f"latency          p50 {_ms(result.p50_ms)}, p99 {_ms(result.p99_ms)}",
        f"time to exclude  {_exclusions(result)}",
        f"reap found       {'; '.join(f.detail for f in reaps) or 'reap did not run'}",
        f"unknown delivery {_unknown_line(result)}",
    ]
    if result.failures_by_error:
        by_error = ", ".join(f"{name} {count}"
                             for name, count in sorted(result.failures_by_error.items()))
        lines.append(f"failures         {by_error}")
    if result.metrics is not None:
        lines.append(f"metrics          {_metrics_line(result, result.metrics)}")
    if result.passed:
        lines.append("verdict          passed: no caller saw a failure the fix could prevent, "
                     "and the checker found no broken guarantee")
    else:
        why = []
        if result.unexplained:
            why.append(f"{result.unexplained} call(s) failed with a live member available")
        if result.violations:
            why.append("the checker found broken guarantees (below)")
        if result.metrics is not None and result.metrics.error:
            why.append("the callers' node's /metrics could not be read")
        elif not result.metrics_agree:
            why.append("/metrics did not count the calls the callers counted")
        lines.append(f"verdict          FAILED: {'; '.join(why)}")
    lines += list(result.violations)
    lines.append(f"violations: {len(result.violations)}")
    return lines


def to_json(result: DemoResult) -> dict[str, Any]:
    """The result as JSON-ready values (``shoal demo --json``)."""
    value = asdict(result)
    value["nodes"] = list(result.nodes)
    value["violations"] = list(result.violations)
    value["unexplained"] = result.unexplained
    value["passed"] = result.passed
    return value
