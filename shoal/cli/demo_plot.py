"""``shoal demo --plot FILE.png``: throughput, latency and failures over time.

Owns the picture of a :class:`~shoal.cli.demo_report.DemoResult`: three
panels sharing one time axis (seconds since the callers started) — calls
answered per second, p50 and p99 latency of each second (log scale), and
failed calls per second — with every fault the demo injected shaded across
all three and named above the first.

Rules:

- Rule 1: matplotlib is optional (the ``demo`` extra, which ``./scripts/demo``
  installs): :func:`require_matplotlib` is called before the demo starts,
  so a missing one is a clear error at once, not after the run.
- Rule 2: it draws off screen (the ``Agg`` backend) and touches no global
  matplotlib state beyond its own figure, which it closes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoal import ConfigError
from shoal.cli.demo_report import DemoResult

__all__ = ["plot", "require_matplotlib"]

# One colour per kind of fault, the same in every panel.
_COLOURS = {"kill": "#d62728", "restart": "#9467bd", "hang": "#ff7f0e", "crash": "#8c564b",
            "deploy": "#1f77b4", "reap": "#2ca02c"}


def require_matplotlib() -> None:
    """Raises:
        ConfigError: matplotlib is not installed (says how to install it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib, which is not installed: "
                          "pip install 'shoal[demo]' (./scripts/demo installs it)") from None


def _mark_faults(axes: Any, result: DemoResult, top: Any) -> None:
    for fault in result.faults:
        colour = _COLOURS.get(fault.kind, "#7f7f7f")
        end = max(fault.end, fault.start + 0.15)  # an instant fault stays visible
        for axis in axes:
            axis.axvspan(fault.start, end, color=colour, alpha=0.18, linewidth=0)
            axis.axvline(fault.start, color=colour, linewidth=0.8)
        top.annotate(fault.label, xy=(fault.start, 1.0), xycoords=("data", "axes fraction"),
                     xytext=(2, 3), textcoords="offset points", rotation=30, fontsize=8,
                     color=colour, ha="left", va="bottom")


def plot(result: DemoResult, path: Path) -> None:
    """Draw ``result`` into the PNG file ``path``.

    Raises:
        ConfigError: matplotlib is not installed.
        OSError: the file cannot be written.
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    seconds = result.per_second
    ts = [s.t + 0.5 for s in seconds]  # each bar and point at the middle of its second
    figure = Figure(figsize=(10, 7), dpi=100, layout="constrained")
    rate, latency, failed = figure.subplots(3, 1, sharex=True,
                                            gridspec_kw={"height_ratios": [3, 3, 2]})
    rate.plot(ts, [s.ok + s.failed for s in seconds], color="#1f77b4", linewidth=1.5)
    rate.set_ylabel("calls / s")
    rate.set_ylim(bottom=0)
    # A second in which no call was answered has no latency: a gap in the line.
    nan = float("nan")
    latency.plot(ts, [s.p50_ms if s.ok else nan for s in seconds], label="p50",
                 color="#2ca02c", linewidth=1.5, marker=".")
    latency.plot(ts, [s.p99_ms if s.ok else nan for s in seconds], label="p99",
                 color="#d62728", linewidth=1.5, marker=".")
    latency.set_yscale("log")
    latency.set_ylabel("latency (ms)")
    latency.legend(loc="upper right", fontsize=8)
    failed.bar([s.t for s in seconds], [s.failed for s in seconds], width=1.0, align="edge",
               color="#d62728")
    failed.set_ylabel("failed / s")
    failed.set_ylim(bottom=0, top=max([1, *(s.failed for s in seconds)]) * 1.2)
    failed.set_xlabel("seconds since the callers started")
    if not result.failed:
        failed.text(0.5, 0.5, "no call failed", transform=failed.transAxes, ha="center",
                    va="center", color="#555555")
    for axis in (rate, latency, failed):
        axis.grid(True, alpha=0.3)
    if seconds:
        rate.set_xlim(0, seconds[-1].t + 1)
    _mark_faults((rate, latency, failed), result, rate)
    figure.suptitle(
        f"shoal demo: {len(result.nodes)} nodes, {result.callers} callers; "
        f"{result.ok:,} calls ok, {result.failed:,} failed, p99 {result.p99_ms:.1f} ms; "
        f"violations: {len(result.violations)}", fontsize=11)
    figure.savefig(path, format="png")
