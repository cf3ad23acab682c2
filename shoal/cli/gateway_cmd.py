"""``shoal gateway`` (a node that only serves the HTTP/JSON gateway: a sidecar)
and ``shoal gateway-token`` (the token clients send), with the gateway's
options shared by ``shoal run`` (``docs/gateway.md``).

Owns nothing: ``shoal gateway`` is ``shoal run`` of an application that
starts nothing, so it stops, drains and exits exactly as ``shoal run``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import shoal
from shoal.cli.common import (
    busy_poll_option,
    configure_logging,
    loop_factory,
    store_options,
    verbose_option,
)
from shoal.runtime.observe import parse_http

__all__ = ["gateway_command", "gateway_options", "gateway_token_command", "sidecar"]

GATEWAY_HELP = ("Also serves the HTTP/JSON gateway under /v1/ for other languages "
                "(docs/gateway.md): a bearer token (shoal gateway-token prints it), "
                "loopback clients only unless --gateway-remote.")


def gateway_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--gateway-remote`` and ``--http-tls``."""
    func = click.option(
        "--http-tls", is_flag=True, default=None,
        help="Serve the HTTP endpoint (and gateway) over HTTPS with the node's peer "
             "certificate and key (--tls-cert, --tls-key) [env SHOAL_HTTP_TLS=1].")(func)
    return click.option(
        "--gateway-remote", is_flag=True, default=None,
        help="Serve gateway clients that are not on loopback (they still need the "
             "token) [env SHOAL_GATEWAY_REMOTE=1; default: loopback only].")(func)


async def sidecar(node: shoal.Node) -> None:
    """The application of ``shoal gateway``: nothing but the node itself."""
    del node


@click.command("gateway")
@click.option("--http", required=True, metavar="HOST:PORT",
              help="Where to serve the gateway (and /metrics, /healthz, /readyz); "
                   "port 0: any free one, logged.")
@click.option("--node", "name", default=None,
              help="The node's name, unique in its cluster [default: gateway-HOST-PID].")
@click.option("--cluster", default=None, help="Cluster name [env SHOAL_CLUSTER; default: default].")
@click.option("--store", default=None,
              help="Store URL of the cluster [env SHOAL_STORE; default: "
                   "sqlite://.shoal/cluster.db].")
@click.option("--listen", default=None,
              help="host:port for peers (members registered here are called through it) "
                   "[env SHOAL_LISTEN; default: 127.0.0.1:0].")
@click.option("--advertise", default=None, metavar="HOST[:PORT]",
              help="Address peers dial to reach this node [env SHOAL_ADVERTISE].")
@click.option("--tls-cert", default=None, metavar="PEM",
              help="This node's certificate for mutual TLS between peers (and HTTPS with "
                   "--http-tls); needs --tls-key and --tls-ca [env SHOAL_TLS_CERT].")
@click.option("--tls-key", default=None, metavar="PEM",
              help="The certificate's private key [env SHOAL_TLS_KEY].")
@click.option("--tls-ca", default=None, metavar="PEM",
              help="The CA that signed every node's certificate [env SHOAL_TLS_CA].")
@gateway_options
@busy_poll_option
@verbose_option
def gateway_command(http: str, name: str | None, cluster: str | None, store: str | None,
                    listen: str | None, advertise: str | None, tls_cert: str | None,
                    tls_key: str | None, tls_ca: str | None, gateway_remote: bool | None,
                    http_tls: bool | None, busy_poll_us: int | None) -> None:
    """Run a node that serves only the HTTP/JSON gateway (a sidecar beside a
    service in another language), until SIGTERM or SIGINT.

    It joins the cluster like `shoal run` (same secret, store and TLS
    settings), runs no application, and serves /v1/ on --http: calls, casts
    and sends to groups and pids, members and watch, and member
    registrations (docs/gateway.md). Clients send `Authorization: Bearer
    TOKEN` (shoal gateway-token prints it; SHOAL_GATEWAY_TOKEN or
    SHOAL_GATEWAY_TOKEN_FILE set it instead); a body over
    SHOAL_GATEWAY_MAX_BODY bytes (default 1 MiB) is refused 413; it opens
    at most SHOAL_GATEWAY_MAX_SCOPES scopes on its node (default 64) and
    calls back members on loopback only, unless --gateway-remote. Exit codes
    as for shoal run.
    """
    from shoal.cli.running import run_node

    root = click.get_current_context().find_root().obj or {}
    name = name or f"gateway-{socket.gethostname().split('.')[0]}-{os.getpid()}"
    configure_logging(root.get("verbose", 0) + 1, root.get("log_format"), name)
    parse_http(http)  # a bad address is bad usage (exit 2) before anything starts
    loop_factory()
    options: dict[str, Any] = {"name": name, "http": http}
    for option, value in (("cluster", cluster), ("store", store), ("listen", listen),
                          ("advertise", advertise), ("tls_cert", tls_cert),
                          ("tls_key", tls_key), ("tls_ca", tls_ca),
                          ("gateway_remote", gateway_remote), ("http_tls", http_tls),
                          ("busy_poll_us", busy_poll_us)):
        if value is not None:
            options[option] = value
    code = asyncio.run(run_node("shoal.cli.gateway_cmd:sidecar", **options))
    if code:
        raise SystemExit(code)


@click.command("gateway-token")
@store_options
def gateway_token_command(store: str | None, cluster: str | None) -> None:
    """Print the gateway's bearer token: SHOAL_GATEWAY_TOKEN (or the contents
    of SHOAL_GATEWAY_TOKEN_FILE) when set, else the one derived from the
    cluster secret, read as shoal run reads it (SHOAL_SECRET,
    SHOAL_SECRET_FILE, or the file beside the embedded store). Reads only:
    with no secret yet it fails (exit 2) rather than create one.
    """
    del cluster  # one secret per store: the cluster name does not change it
    from shoal.gateway.context import resolve_token
    from shoal.runtime.config import DEFAULT_STORE, load_secret

    url = store or os.environ.get("SHOAL_STORE") or DEFAULT_STORE

    def secret() -> bytes:
        if not (os.environ.get("SHOAL_SECRET") or os.environ.get("SHOAL_SECRET_FILE")) \
                and url.startswith("sqlite://"):
            beside = Path(url[len("sqlite://"):]).parent / "secret"
            if not beside.exists():
                raise shoal.ConfigError(f"no cluster secret: {beside} does not exist yet "
                                        "(start a node first) and neither SHOAL_SECRET "
                                        "nor SHOAL_SECRET_FILE is set")
        return load_secret(None, url)
    click.echo(resolve_token(secret))
