"""What every ``shoal`` command shares: exit codes, logging, common options."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

import click

import shoal
from shoal.cli.logformat import LOG_FORMATS, JsonFormatter

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "configure_logging", "confirm", "echo_table",
           "log_format_option", "loop_factory", "parse_json", "store_options", "verbose_option"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def loop_factory() -> None:
    """Use uvloop when it is installed (it is a dependency on POSIX)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop missing on this platform
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def configure_logging(verbose: int, log_format: str | None = None,
                      node: str | None = None) -> None:
    """Log to stderr at WARNING, INFO (-v) or DEBUG (-vv), as text or as
    one JSON object per line (``log_format``, default ``SHOAL_LOG_FORMAT``,
    else text; ``shoal/cli/logformat.py``), naming ``node`` when given.

    The level and format are set only on a root logger this command
    configured itself: an embedding program (or a test runner) that set up
    logging keeps it.

    Raises:
        BadArgument: (``SHOAL_LOG_FORMAT``) neither ``text`` nor ``json``.
    """
    if log_format is None:
        log_format = os.environ.get("SHOAL_LOG_FORMAT") or "text"
    if log_format not in LOG_FORMATS:
        raise shoal.BadArgument("SHOAL_LOG_FORMAT", log_format, "'text' or 'json'")
    root = logging.getLogger()
    level = logging.WARNING - 10 * min(verbose, 2)
    if not root.handlers:
        logging.basicConfig(level=level, format=_LOG_FORMAT)
        root.handlers[0].set_name("shoal-cli")
    elif any(handler.get_name() == "shoal-cli" for handler in root.handlers):
        root.setLevel(level)
    for handler in root.handlers:
        if handler.get_name() == "shoal-cli":
            handler.setFormatter(JsonFormatter(node) if log_format == "json"
                                 else logging.Formatter(_LOG_FORMAT))


def _more_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        root = ctx.find_root()
        root.obj = dict(root.obj or {})
        root.obj["verbose"] = root.obj.get("verbose", 0) + value
        configure_logging(root.obj["verbose"], root.obj.get("log_format"))


def _log_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        root = ctx.find_root()
        root.obj = dict(root.obj or {})
        root.obj["log_format"] = value
        configure_logging(root.obj.get("verbose", 0), value)


def log_format_option(func: Any) -> Any:
    """``--log-format text|json`` (env ``SHOAL_LOG_FORMAT``), before or after
    the command name."""
    return click.option("--log-format", type=click.Choice(LOG_FORMATS), default=None,
                        expose_value=False, callback=_log_format, is_eager=True,
                        help="Log records as text, or as one JSON object per line with "
                             "stable fields (time, level, node, event, message and the "
                             "event's fields) [env SHOAL_LOG_FORMAT; default: text].")(func)


def verbose_option(func: Any) -> Any:
    """``-v`` after the command name too (``shoal run -v ...``), adding to ``shoal -v``."""
    return click.option("-v", "--verbose", count=True, expose_value=False,
                        callback=_more_verbose,
                        help="Log more, as -v before the command does.")(func)


def busy_poll_option(func: Any) -> Any:
    """``--busy-poll-us`` (env ``SHOAL_BUSY_POLL_US``, read by the node)."""
    return click.option(
        "--busy-poll-us", default=None, type=click.IntRange(0, 10_000), metavar="US",
        help="Microseconds the node keeps polling its sockets after call traffic "
             "instead of sleeping, so answers skip the OS wake-up (150-300 us on VMs "
             "whose idle CPUs halt); at most that much CPU per call, none when idle, "
             "paused while other threads want the CPU. 0: off "
             "[env SHOAL_BUSY_POLL_US; default: 150].")(func)


def store_options(func: Any) -> Any:
    func = verbose_option(func)
    func = click.option("--cluster", default=None,
                        help="Cluster name [env SHOAL_CLUSTER; default: default].")(func)
    func = click.option("--store", default=None,
                        help="Store URL of an existing cluster [env SHOAL_STORE; "
                             "default: sqlite://.shoal/cluster.db].")(
        func)
    return func


def echo_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(argument: str, text: str) -> Any:
    """Strict JSON (no NaN or Infinity), or BadArgument naming ``argument``."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise shoal.BadArgument(argument, text, f"JSON ({exc})") from None


def confirm(prompt: str, yes: bool) -> None:
    """Go on only with ``--yes`` or a "y" typed on a terminal.

    Raises:
        BadArgument: no ``--yes`` and no terminal to ask on.
        click.exceptions.Abort: the operator answered no.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise shoal.BadArgument("--yes", False, "--yes to act without a terminal to confirm on")
    click.confirm(prompt, abort=True)
