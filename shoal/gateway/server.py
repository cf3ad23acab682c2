"""The gateway's wiring into a node's HTTP endpoint (``runtime/observe.py``).

Owns nothing: :func:`mount` adds the middleware and every ``/v1/`` route
to the endpoint's aiohttp application before it starts; :func:`for_node`
builds a node's :class:`~shoal.gateway.context.GatewayContext` from its
settings and the environment (``docs/gateway.md`` section 1).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from shoal.errors import ConfigError
from shoal.gateway import callers
from shoal.gateway.context import (
    GatewayContext,
    GatewayNode,
    max_body_from_env,
    max_scopes_from_env,
    resolve_token,
)

__all__ = ["env_flag", "for_node", "http_ssl", "mount", "prepare"]

log = logging.getLogger("shoal")


ROUTES: list[Callable[[web.Application, GatewayContext], None]] = [callers.add_routes]
"""What :func:`mount` adds to the application, in order. The members'
routes (``members.add_routes``) are appended by the package
(``shoal/gateway/__init__.py``): they spawn processes, so they import the
process layer's ``GenServer``, which names ``Node`` in its types, and the
node imports this module: listing them here would close that circle."""


def mount(app: web.Application, ctx: GatewayContext) -> None:
    """Serve the gateway under ``/v1/`` of ``app`` (not started yet)."""
    app.middlewares.append(ctx.middleware)
    for add_routes in ROUTES:
        add_routes(app, ctx)


def env_flag(name: str) -> bool:
    """An environment switch: ``1``/``true``/``yes`` on, unset/``0``/``false``/``no`` off.

    Raises:
        ConfigError: any other value.
    """
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{name}={raw!r}: expected 1 or 0")


def for_node(node: GatewayNode, secret: Callable[[], bytes], *,
             allow_remote: bool | None = None) -> GatewayContext:
    """The gateway of ``node``: its token (``SHOAL_GATEWAY_TOKEN[_FILE]`` or
    derived from the cluster secret, read by ``secret``), its body limit
    (``SHOAL_GATEWAY_MAX_BODY``), the scopes it may open
    (``SHOAL_GATEWAY_MAX_SCOPES``) and whether it serves remote clients
    (``allow_remote``, default ``SHOAL_GATEWAY_REMOTE``).

    Raises:
        ConfigError, BadArgument: a bad setting, named.
    """
    remote = env_flag("SHOAL_GATEWAY_REMOTE") if allow_remote is None else allow_remote
    max_body = max_body_from_env()
    try:
        token: str | None = resolve_token(secret)
        problem = ""
    except ConfigError as exc:
        if os.environ.get("SHOAL_GATEWAY_TOKEN") or os.environ.get("SHOAL_GATEWAY_TOKEN_FILE"):
            raise  # a token was configured, badly: say so at start
        token, problem = None, (f"the gateway has no token ({exc}); set SHOAL_GATEWAY_TOKEN "
                                "or the cluster secret")
        log.warning("node %s: %s", node.name, problem)
    return GatewayContext(node, token, max_body=max_body, allow_remote=remote,
                          token_problem=problem, max_scopes=max_scopes_from_env())


def http_ssl(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """The server TLS context of an HTTPS endpoint (``--http-tls``): the node's
    peer certificate and key.

    Raises:
        ConfigError: the files cannot be read or do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--http-tls: cannot load certificate {cert} and key {key}: "
                          f"{exc}") from None
    return context


def prepare(node: GatewayNode, secret: bytes | str | None, store: Any,
            tls_files: tuple[Any, ...], allow_remote: bool | None,
            http_tls: bool | None) -> tuple[GatewayContext, ssl.SSLContext | None]:
    """What a node's endpoint serves: its gateway and, with ``http_tls``
    (default ``SHOAL_HTTP_TLS``), the TLS context of its peer certificate
    (``tls_files``, else ``SHOAL_TLS_CERT`` and ``SHOAL_TLS_KEY``).

    Raises:
        ConfigError, BadArgument: a bad setting, named.
    """
    from shoal.runtime.config import load_secret

    url = store if isinstance(store, str) else "object://"
    ctx = for_node(node, lambda: load_secret(secret, url), allow_remote=allow_remote)
    if not (env_flag("SHOAL_HTTP_TLS") if http_tls is None else http_tls):
        return ctx, None
    cert = tls_files[0] or os.environ.get("SHOAL_TLS_CERT")
    key = tls_files[1] or os.environ.get("SHOAL_TLS_KEY")
    if not cert or not key:
        raise ConfigError("--http-tls serves HTTPS with the node's peer certificate: give "
                          "--tls-cert and --tls-key (or SHOAL_TLS_CERT and SHOAL_TLS_KEY)")
    return ctx, http_ssl(cert, key)
