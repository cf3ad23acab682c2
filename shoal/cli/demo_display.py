"""The progress display of ``shoal demo``: live on a terminal, plain lines otherwise.

Owns how a run's progress looks while it runs. The orchestration
(``shoal/cli/demo.py``) tells a :class:`Progress` three things: a phase
began (:meth:`Progress.phase`), something happened (:meth:`Progress.event`:
a node excluded, restarted, what reap found), and, four times a second,
the figures (:meth:`Progress.tick` with a :class:`Tick`).

- :class:`LiveProgress` (a terminal): a panel redrawn in place by
  ``rich`` (calls/s, calls ok and failed, p50/p99 of the last second,
  members routable per node, the phase), with phases and events scrolling
  above it as permanent lines.
- :class:`PlainProgress` (a pipe, a file, a CI log): the same phases and
  events as lines, plus one line of figures per second, nothing redrawn.

Rule: a display only shows; it never decides anything, so a run behaves
the same with either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["LiveProgress", "NodeState", "PlainProgress", "Progress", "Tick", "make_progress"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeState:
    """A node as the callers' node sees it."""

    name: str
    members: int
    """Members of the service group on it, in the callers' view."""
    routable: bool
    """Whether the callers' node routes calls to it (not silent, not lost)."""
    in_flight: int
    """Calls the callers have out to its members now (all of them, while
    it hangs: a hung node keeps what it was sent)."""

    @property
    def routable_members(self) -> int:
        return self.members if self.routable else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """The figures at one instant, ``t`` seconds after the callers started."""

    t: float
    ok: int
    failed: int
    retried: int
    rate: int
    """Calls answered (ok or failed) in the last whole second."""
    p50_ms: float
    p99_ms: float
    """Latency percentiles of the last whole second."""
    nodes: tuple[NodeState, ...]


def _stamp(t: float | None) -> str:
    return " " * 8 if t is None else f"t={t:5.1f}s"


def _latency(tick: Tick, ms: float) -> str:
    return f"{ms:.1f} ms" if tick.rate else "-"  # no call answered in that second


def _routable_text(nodes: tuple[NodeState, ...]) -> str:
    return " | ".join(f"{n.name} {n.routable_members}/{n.members} in flight {n.in_flight}"
                      for n in nodes)


class Progress:
    """What a display is told (see the module header). The base class shows nothing."""

    def phase(self, number: int, of: int, name: str, detail: str,
              t: float | None = None) -> None:
        """Phase ``number`` of ``of`` began: ``name`` is short (``hang n2``),
        ``detail`` says what it does."""

    def event(self, text: str, t: float | None = None) -> None:
        """Something happened worth a line."""

    def tick(self, tick: Tick) -> None:
        """The current figures (called about four times a second)."""

    def close(self) -> None:
        """The run ended: leave the screen as it is (again: nothing more)."""


class PlainProgress(Progress):
    """Plain lines on ``stream``: phases, events, and one line of figures a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._phase = "starting"  # the current phase's short name
        self._second = -1

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def phase(self, number: int, of: int, name: str, detail: str,
              t: float | None = None) -> None:
        self._phase = name
        self._line(f"{_stamp(t)} == phase {number}/{of}: {name}: {detail}")

    def event(self, text: str, t: float | None = None) -> None:
        self._line(f"{_stamp(t)}    {text}")

    def tick(self, tick: Tick) -> None:
        second = int(tick.t)
        if second == self._second:
            return
        self._second = second
        self._line(f"{_stamp(tick.t)} {self._phase:<14} {tick.rate:>6,} calls/s  "
                   f"ok {tick.ok:,}  failed {tick.failed:,}  retried {tick.retried:,}  "
                   f"p50 {_latency(tick, tick.p50_ms)}  p99 {_latency(tick, tick.p99_ms)}  "
                   f"routable {_routable_text(tick.nodes)}")


class LiveProgress(Progress):
    """A panel redrawn in place on a terminal (``rich``), events scrolling above it."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream, force_terminal=True, highlight=False)
        self._title = "starting the cluster"
        self._last: Tick | None = None
        self._closed = False
        self._live = Live(self._render(), console=self.console, refresh_per_second=4,
                          transient=False, redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        tick = self._last
        figures = Table.grid(padding=(0, 3))
        for _ in range(6):
            figures.add_column(justify="right")
        figures.add_row(*(Text(h, style="dim") for h in
                          ("calls/s", "ok", "failed", "retried", "p50", "p99")))
        nodes = Table.grid(padding=(0, 2))
        if tick is not None:
            failed_style = "bold red" if tick.failed else "green"
            figures.add_row(f"{tick.rate:,}", f"{tick.ok:,}",
                            Text(f"{tick.failed:,}", style=failed_style), f"{tick.retried:,}",
                            _latency(tick, tick.p50_ms), _latency(tick, tick.p99_ms))
            for node in tick.nodes:
                style = "green" if node.routable_members else "bold red"
                state = "" if node.routable_members else (
                    "unroutable: silent or lost" if node.members else "no members: down")
                nodes.add_row(Text(node.name, style="bold"),
                              Text(f"{node.routable_members}/{node.members} members "
                                   "routable", style=style),
                              Text(f"{node.in_flight:>3} calls in flight"),
                              Text(state, style="dim"))
        when = "" if tick is None else f"  t={tick.t:.1f}s"
        return Panel(Group(figures, Text(""), nodes), title=f"shoal demo: {self._title}{when}",
                     title_align="left", expand=False)

    def _refresh(self) -> None:
        self._live.update(self._render(), refresh=True)

    def phase(self, number: int, of: int, name: str, detail: str,
              t: float | None = None) -> None:
        from rich.markup import escape

        self._title = f"phase {number}/{of}, {name}"
        self.console.print(f"[dim]{_stamp(t)}[/dim] [bold cyan]== phase {number}/{of}: "
                           f"{escape(name)}[/bold cyan]: {escape(detail)}", markup=True)
        self._refresh()

    def event(self, text: str, t: float | None = None) -> None:
        from rich.markup import escape

        self.console.print(f"[dim]{_stamp(t)}[/dim]    {escape(text)}", markup=True)

    def tick(self, tick: Tick) -> None:
        self._last = tick
        self._live.update(self._render())

    def close(self) -> None:
        if not self._closed:  # closing twice draws nothing more
            self._closed = True
            self._refresh()
            self._live.stop()


def make_progress(stream: TextIO, *, live: bool | None = None) -> Progress:
    """A live display when ``stream`` is a terminal (or ``live`` says so),
    plain lines otherwise."""
    if live is None:
        isatty = getattr(stream, "isatty", None)
        live = bool(isatty and isatty())
    return LiveProgress(stream) if live else PlainProgress(stream)
