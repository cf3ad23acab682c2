"""Command-line entry point and the commands that need no cluster."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

import shoal
from shoal.cli.audit import audit_command
from shoal.cli.chaos import chaos_command
from shoal.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    busy_poll_option,
    configure_logging,
    echo_table,
    log_format_option,
    loop_factory,
    parse_json,
    store_options,
    verbose_option,
)
from shoal.cli.demo_command import demo_command
from shoal.cli.gateway_cmd import gateway_command, gateway_options, gateway_token_command
from shoal.cli.ops import COMMANDS
from shoal.cli.reloading import reload_command
from shoal.cli.top_view import top_command
from shoal.cli.upcommands import UP_COMMANDS
from shoal.runtime.observe import parse_http
from shoal.runtime.process import RUN_MAILBOX_SIZE

__all__ = ["main", "run"]

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(shoal.__version__, prog_name="shoal",
                      message=f"%(prog)s, version %(version)s (wire code: "
                              f"{shoal.build_info()['wire']})")
@click.option("-v", "--verbose", count=True,
              help="Log more: -v INFO, -vv DEBUG (shoal run logs at INFO already; -v "
                   "gives DEBUG there). Also accepted after the command.")
@log_format_option
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """shoal: Erlang/OTP-style processes and process groups for Python services.

    Exit codes: 0 success; 1 the job failed (a failed call, an unreachable
    store, no cluster at the store's path, a demo that found a violation or
    a failure it cannot explain, an application whose setup raised, a listen
    address that cannot be bound); 2 bad usage (an unknown command or option, a malformed or
    out-of-range value, an app that cannot be loaded, a configuration shoal
    refuses such as an unsafe secret file or incomplete peer TLS); 3 (shoal
    run) the node fenced itself: a newer incarnation holds its name; 4
    (shoal run) the application's top supervisor gave up (too many restarts);
    130 (shoal demo) interrupted by Ctrl-C, SIGTERM or SIGHUP, every node it
    started stopped.
    """
    ctx.obj = {**(ctx.obj or {}), "verbose": verbose}
    configure_logging(verbose, ctx.obj.get("log_format"))


@cli.command("run")
@click.argument("app")
@click.option("--node", "name", required=True, help="The node's name, unique in its cluster.")
@click.option("--cluster", default=None, help="Cluster name [env SHOAL_CLUSTER; default: default].")
@click.option("--store", default=None,
              help="Store URL: sqlite:///path, etcd://host:port[,...], memory:// "
                   "[env SHOAL_STORE; default: sqlite://.shoal/cluster.db].")
@click.option("--listen", default=None,
              help="host:port for peers [env SHOAL_LISTEN; default: 127.0.0.1:0].")
@click.option("--advertise", default=None, metavar="HOST[:PORT]",
              help="Address peers dial to reach this node, when it is not the listen "
                   "address (NAT, a container's mapped port, a DNS name) "
                   "[env SHOAL_ADVERTISE; default: the listen address].")
@click.option("--heartbeat-timeout", default=2.0, show_default=True, type=float,
              help="Seconds of silence before a peer's members are unroutable.")
@click.option("--session-ttl", default=5.0, show_default=True, type=float,
              help="Seconds the store keeps this node's entries after it stops renewing "
                   "its session (a killed node's members vanish after this on etcd).")
@click.option("--idle-timeout", default=300.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds after which a connection to a peer that carried no call, cast, "
                   "send, monitor or link (and holds no monitor or link) is closed; the "
                   "next call reopens it and the peer's members stay routable. 0: never.")
@click.option("--mailbox-size", default=RUN_MAILBOX_SIZE, show_default=True,
              type=click.IntRange(min=0),
              help="Bound of every mailbox whose behaviour sets none: calls, casts and "
                   "sends past it raise Overloaded instead of queueing. 0: unbounded.")
@click.option("--tls-cert", default=None, metavar="PEM",
              help="This node's certificate for mutual TLS between peers; needs --tls-key "
                   "and --tls-ca too [env SHOAL_TLS_CERT; default: plain TCP].")
@click.option("--tls-key", default=None, metavar="PEM",
              help="The certificate's private key [env SHOAL_TLS_KEY].")
@click.option("--tls-ca", default=None, metavar="PEM",
              help="The CA that signed every node's certificate [env SHOAL_TLS_CA].")
@click.option("--tls-server-name", default=None,
              help="Name a peer's certificate must carry [env SHOAL_TLS_SERVER_NAME; "
                   "default: the address dialled].")
@click.option("--reload", "reload", is_flag=True,
              help="Development: watch the app's source files (its module, its top-level "
                   "package, the modules beside it) and reload a changed module in place, "
                   "moving its processes to the new code, instead of restarting the node.")
@click.option("--http", default=None, metavar="HOST:PORT",
              help="Serve /metrics (Prometheus), /healthz and /readyz over HTTP on this "
                   "address (port 0: any free one, logged) [env SHOAL_HTTP; default: off]. "
                   "/readyz answers 200 once the app is set up and its joins are in the "
                   "store, 503 while starting, draining or fenced. The same address "
                   "serves the HTTP/JSON gateway under /v1/ (docs/gateway.md).")
@gateway_options
@busy_poll_option
@verbose_option
@log_format_option
def run_command(app: str, name: str, cluster: str | None, store: str | None,
                listen: str | None, advertise: str | None, heartbeat_timeout: float,
                session_ttl: float, idle_timeout: float, mailbox_size: int,
                tls_cert: str | None, tls_key: str | None, tls_ca: str | None,
                tls_server_name: str | None, reload: bool, http: str | None,
                gateway_remote: bool | None, http_tls: bool | None,
                busy_poll_us: int | None) -> None:
    """Host a node running APP (module:attribute) until SIGTERM or SIGINT.

    APP is an async function taking the started node (it spawns processes
    and joins groups), or a supervision tree: a shoal.Supervisor subclass, or
    a function returning one or a shoal.SupervisorSpec, which the node starts
    as its top supervisor. An APP that cannot be loaded is bad usage (exit
    2); one whose setup raises, or whose top supervisor fails to start,
    fails the job (exit 1). When the top supervisor gives up (too many
    restarts), the node stops and the command exits 4. The secret comes from
    SHOAL_SECRET or SHOAL_SECRET_FILE (or, with the embedded store, from the
    file generated beside it). On SIGTERM or SIGINT the node leaves its
    groups, drains calls in flight, runs every terminate and ends its
    session (exit 0). It logs at INFO (-v: DEBUG), once per event with its
    reason: peers connected, silent, back or lost, store outages and its
    session lost and re-opened, fencing, supervisor restarts, admin actions
    received; and on SIGUSR1 a dump of its processes and tasks. With
    --log-format json each record is one JSON object per line. With --http
    it serves /metrics, /healthz and /readyz (docs/operations.md), and the
    HTTP/JSON gateway under /v1/ (docs/gateway.md; its bearer token is
    printed by shoal gateway-token, or set with SHOAL_GATEWAY_TOKEN or
    SHOAL_GATEWAY_TOKEN_FILE; bodies are limited to SHOAL_GATEWAY_MAX_BODY
    bytes, default 1 MiB). Exit 3: it fenced itself (a newer
    incarnation holds its name).

    With --reload (development), a changed source file of the app is
    reloaded in place every 0.5 s at most (node.reload: its processes move
    to the new code, keeping their state through code_change); setup is not
    run again, and each reload is logged with what moved and what failed.
    """
    from shoal.cli.running import run_node

    # A node is a server: it logs at INFO (peers down and back, the SIGUSR1
    # dump) unless asked for more; the other commands log at WARNING.
    root = click.get_current_context().find_root().obj
    configure_logging(root.get("verbose", 0) + 1, root.get("log_format"), name)
    parse_http(http)  # a bad address is bad usage (exit 2) before anything starts
    loop_factory()
    options: dict[str, object] = {"name": name, "heartbeat_timeout": heartbeat_timeout,
                                  "session_ttl": session_ttl,
                                  "idle_timeout": idle_timeout or None,
                                  "mailbox_size": mailbox_size or None}
    if cluster is not None:
        options["cluster"] = cluster
    if store is not None:
        options["store"] = store
    if listen is not None:
        options["listen"] = listen
    for option, value in (("advertise", advertise), ("tls_cert", tls_cert),
                          ("tls_key", tls_key), ("tls_ca", tls_ca),
                          ("tls_server_name", tls_server_name), ("http", http),
                          ("gateway_remote", gateway_remote), ("http_tls", http_tls),
                          ("busy_poll_us", busy_poll_us)):
        if value is not None:
            options[option] = value
    code = asyncio.run(run_node(app, reload=reload, **options))
    if code:
        raise SystemExit(code)


@cli.command()
@store_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def nodes(store: str | None, cluster: str | None, as_json: bool) -> None:
    """List the live nodes of the cluster.

    Reads the store and changes nothing: it joins nothing, creates no file
    and needs no write access (SQLite is opened read-only). A store that does
    not exist is an error: "no cluster at PATH" (exit 1).
    """
    from shoal.cli.inspect import describe_node, read_cluster

    view = asyncio.run(read_cluster(store, cluster))
    rows = [describe_node(name, info) for name, info in sorted(view.nodes.items())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        echo_table(rows, ["name", "address", "os_pid", "host", "version", "uptime_s", "creation"])


@cli.command()
@store_options
@click.option("--scope", default=None, help="Only this scope (default: every scope).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def groups(store: str | None, cluster: str | None, scope: str | None, as_json: bool) -> None:
    """List the non-empty groups with their member counts (read-only, as nodes)."""
    from shoal.cli.inspect import read_cluster

    view = asyncio.run(read_cluster(store, cluster))
    rows = [{"scope": s, "group": g, "members": sum(c for _, c in entries),
             "nodes": len({p.node for p, _ in entries})}
            for (s, g), entries in sorted(view.members.items()) if scope in (None, s)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        echo_table(rows, ["scope", "group", "members", "nodes"])


@cli.command()
@click.argument("group")
@store_options
@click.option("--scope", default="default", show_default=True, help="The group's scope.")
@click.option("--live", is_flag=True,
              help="Join the cluster briefly and ask each member's owner: routable or not "
                   "and why, queue length, seconds since it joined.")
@click.option("--timeout", default=5.0, show_default=True, type=float,
              help="With --live: seconds to wait for each answer, a finite number > 0.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def members(group: str, store: str | None, cluster: str | None, scope: str, live: bool,
            timeout: float, as_json: bool) -> None:
    """List the members of GROUP, once per pid with its join count (read-only, as nodes).

    JSON: [{pid, node, joins}]. With --live the command joins the cluster
    briefly (it needs the secret, as call does) and asks the nodes; JSON
    then adds per member: routable (bool), why ("ok"; "node-down": no
    session in the store for its incarnation; "suspect": its owner could
    not be asked, or a node suspects it; "noproc": its owner says it is not
    alive; "not-member": a leave in flight), suspect_since_s (the longest
    any node has suspected its owner, or null), suspected_by ({node:
    seconds}), queue_len and joined_s (seconds since it joined; null when
    its owner did not answer). Exit 1 when the group has no members.
    """
    from shoal.cli.inspect import read_cluster

    if live:
        _live_members(group, store, cluster, scope, timeout, as_json)
        return
    view = asyncio.run(read_cluster(store, cluster))
    rows = [{"pid": str(p), "node": p.node, "joins": c}
            for p, c in sorted(view.members.get((scope, group), []))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        echo_table(rows, ["pid", "node", "joins"])


def _live_members(group: str, store: str | None, cluster: str | None, scope: str,
                  timeout: float, as_json: bool) -> None:
    from shoal.cli.liveness import live_members
    from shoal.cli.operate import cli_node
    from shoal.runtime.checks import check_group, check_timeout

    check_group(group)
    seconds = check_timeout(timeout)
    loop_factory()

    async def go() -> list[dict[str, Any]]:
        async with cli_node(store, cluster) as node:
            return await live_members(node, store, cluster, scope, group, seconds)

    rows = asyncio.run(go())
    if as_json:
        click.echo(json.dumps(rows, indent=2, allow_nan=False))
        return
    for row in rows:
        row["routable"] = "yes" if row["routable"] else "no"
        if row["suspect_since_s"] is not None:
            row["why"] += f" ({row['suspect_since_s']} s)"
    echo_table(rows, ["pid", "node", "routable", "why", "queue_len", "joined_s"])


@cli.command("call")
@click.argument("target", metavar="GROUP|PID|NAME")
@click.argument("request")
@store_options
@click.option("--scope", default="default", show_default=True, help="The group's scope.")
@click.option("--timeout", default=5.0, show_default=True, type=float,
              help="Seconds, a finite number > 0.")
@click.option("--strategy", default="local_first", show_default=True,
              type=click.Choice(["local_first", "random", "round_robin", "least_loaded",
                                 "hash"]))
@click.option("--key", default=None, help="Routing key (JSON); required by --strategy hash.")
@click.option("--global", "by_name", is_flag=True,
              help="TARGET is a cluster-wide registered name (node.register_global): "
                   "call the process registered as it (--scope, --strategy and --key "
                   "do not apply).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the reply as indented JSON (without: JSON on one line).")
def call_command(target: str, request: str, store: str | None, cluster: str | None,
                 scope: str, timeout: float, strategy: str, key: str | None,
                 by_name: bool, as_json: bool) -> None:
    """Call one member of GROUP, or one PID, with REQUEST (JSON); print the reply as JSON.

    A PID is written as printed, with its angle brackets: <node.creation.serial>
    (--scope, --strategy and --key then do not apply). With --global, TARGET
    is a cluster-wide registered name: the process registered as it is called
    (exit code 1 and "no process registered globally" if none is).

    Joins the cluster briefly as a node named shoal-cli-<os pid>; the secret
    comes from SHOAL_SECRET or SHOAL_SECRET_FILE (or the embedded store's file),
    peer TLS from SHOAL_TLS_CERT, SHOAL_TLS_KEY and SHOAL_TLS_CA (and
    SHOAL_TLS_SERVER_NAME) when the cluster's nodes use it. The output is
    always valid JSON: what JSON cannot hold is converted (NaN and Infinity
    become null, as JavaScript's JSON.stringify does; bytes become text,
    other values their str()).

    Examples: shoal call counters '"incr"'; shoal call '<api-1.1733.5>' '"incr"';
    shoal call --global billing '"total"'
    """
    from shoal.cli.inspect import call_group, to_json
    from shoal.cli.operate import parse_target
    from shoal.runtime.checks import check_timeout

    group = target if by_name else parse_target(target)
    value = parse_json("request", request)
    routing = parse_json("key", key) if key is not None else None
    check_timeout(timeout)
    if strategy == "hash" and key is None and not by_name:
        raise shoal.BadArgument("key", None, "a routing key (--key JSON) with --strategy hash")
    loop_factory()
    reply = asyncio.run(call_group(store, cluster, group, value, scope=scope, timeout=timeout,
                                   strategy=strategy, key=routing, by_name=by_name))
    click.echo(json.dumps(to_json(reply), indent=2 if as_json else None, allow_nan=False))


for _command in (demo_command, gateway_command, gateway_token_command, *COMMANDS,
                 reload_command, audit_command, chaos_command, top_command, *UP_COMMANDS):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Run the ``shoal`` command with ``argv``; return its exit code."""
    try:
        cli.main(args=argv, prog_name="shoal", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAILED
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_FAILED
    except shoal.UsageError as exc:  # BadArgument, ConfigError: the caller's to fix
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    except shoal.ShoalError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_FAILED
    except OSError as exc:  # e.g. the listen address cannot be bound
        click.echo(f"error: {exc}", err=True)
        return EXIT_FAILED
    return EXIT_OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
