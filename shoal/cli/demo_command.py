"""The ``shoal demo`` command: options, output and exit code.

A thin layer over :func:`shoal.cli.demo.run_demo`. It imports the demo
(and ``shoal.testing``) only when run, so other commands do not pay for it.
Output: the progress display (``shoal/cli/demo_display.py``) and the end
report on stdout; with ``--json``, plain progress lines on stderr and one
JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from shoal.cli.common import EXIT_FAILED, verbose_option
from shoal.errors import BadArgument

__all__ = ["EXIT_INTERRUPTED", "demo_command"]

EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C (SIGINT, 128 + 2, as shells report it), and after
SIGTERM or SIGHUP (its terminal closed)."""


@click.command("demo")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(3, 7),
              help="Node processes in the cluster, 3 to 7 (one is killed, another hung; "
                   "the callers need one left).")
@click.option("--callers", default=16, show_default=True, type=click.IntRange(1, 256),
              help="Concurrent callers in the demo's own process, 1 to 256.")
@click.option("--scale", default=1.0, show_default=True, type=click.FloatRange(0.25, 10.0),
              help="Multiplies the quiet time between faults (warm-up, watching the "
                   "cluster settle), 0.25 to 10; the faults themselves keep their length.")
@click.option("--non-idempotent", "non_idempotent", is_flag=True,
              help="Mark the calls NOT idempotent: a call in flight on a killed node or "
                   "crashed worker then fails with delivery unknown (counted apart, "
                   "not a failure of the demo).")
@click.option("--plot", "plot_path", default=None, metavar="FILE.png",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw throughput, latency and failures over time, each fault "
                   "marked, into this PNG (needs matplotlib: pip install 'shoal[demo]'; "
                   "./scripts/demo installs it).")
@click.option("--http", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT",
              help="Where the callers' node serves /metrics, /healthz and /readyz during "
                   "the run (port 0: any free port; the URL is printed at the start). The "
                   "report checks that /metrics counted the same calls as the callers.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as one JSON object on stdout (progress lines go to "
                   "stderr): calls ok/failed/unknown/retried, p50_ms/p99_ms, per_second, "
                   "faults (with excluded_after), violations, os_pids, metrics, passed.")
@verbose_option
def demo_command(nodes: int, callers: int, scale: float, non_idempotent: bool,
                 plot_path: Path | None, http: str, as_json: bool) -> None:
    """A real 3-node cluster under load, broken on purpose, and the verdict.

    Starts node processes running a supervised group of workers (group
    'service') on an embedded store in a temporary directory (removed at
    the end), and calls the group from this process while it, in phases:
    kills a node with -9 and restarts it under its name; hangs another
    (SIGSTOP for 3 s, then SIGCONT); crashes workers (their supervisor
    restarts them); drains and restarts every node in turn (a rolling
    deploy); runs reap, which should find nothing. A terminal shows a live
    display (calls/s, failures, p50/p99, members routable per node, the
    phase); otherwise one line a second. The calls are marked idempotent,
    because the workers' requests are. The report ends with the invariant
    checker's verdict, 'violations: N'. About 30 s.

    Exit codes: 0 the checker found no violation and every failed call was
    an unknown-delivery failure of a non-idempotent call (none, unless
    --non-idempotent); 1 otherwise, or a node did not come back after a
    fault, or the --http address cannot be listened on; 2 bad usage (also
    --plot without matplotlib); 130 interrupted
    (Ctrl-C, SIGTERM, or SIGHUP when its terminal closes): every node
    process it started has been stopped.
    """
    from shoal.cli.demo import DemoOptions, check_plot_path, run_demo
    from shoal.cli.demo_display import make_progress
    from shoal.cli.demo_report import exit_code, report_lines, to_json
    from shoal.runtime.observe import parse_http

    try:
        parse_http(http)
    except BadArgument as exc:
        raise click.BadParameter(str(exc), param_hint="--http") from None
    if plot_path is not None:
        from shoal.cli.demo_plot import require_matplotlib

        require_matplotlib()
        check_plot_path(plot_path)
    # No uvloop here: its clock ticks in whole milliseconds, too coarse for
    # the latencies the demo reports (the node processes still use it).
    progress = make_progress(sys.stderr, live=False) if as_json else make_progress(sys.stdout)
    options = DemoOptions(nodes=nodes, callers=callers, scale=scale,
                          idempotent=not non_idempotent, http=http)
    os_pids: dict[str, list[int]] = {}
    try:
        result = run_demo(options, progress, os_pids)
    except OSError as exc:  # the callers' node could not listen on --http
        if isinstance(exc, TimeoutError):  # a node did not come back: exit 1, as documented
            raise
        progress.close()
        click.echo(f"shoal demo: could not start: {exc} (is --http {http} free?)", err=True)
        raise SystemExit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        progress.close()
        pids = ", ".join(str(p) for ps in os_pids.values() for p in ps) or "none yet"
        click.echo(f"interrupted: every node process the demo started has stopped "
                   f"(OS pids {pids})", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        progress.close()  # closing twice is harmless
    if plot_path is not None:
        from shoal.cli.demo_plot import plot

        plot(result, plot_path)
        click.echo(f"plot written to {plot_path}", err=as_json)
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2))
    else:
        for line in report_lines(result):  # the last: "violations: N"
            click.echo(line)
    code = exit_code(result)
    if code:
        raise SystemExit(EXIT_FAILED)
