"""What every gateway route shares: the node, the token, the limits, the
counters, and the middleware that guards ``/v1/`` (``docs/gateway.md`` section 1).

Owns: the :class:`GatewayContext` of one node (built by the node when it
starts its HTTP endpoint), the gateway's ``/metrics`` families, and the set
of open watches (each closed when its client goes away).

Rules:

- Rule 1: a ``/v1/`` request passes, in this order: the node serves (else
  ``503 unavailable``), the client's address is loopback or the node allows
  remote clients (else ``403 forbidden``), the bearer token matches,
  compared in constant time (else ``401 unauthorized``). Only then is its
  body read, at most ``max_body`` bytes (else ``413 too_large``, the
  connection closed: the rest is never read).
- Rule 2: every ``/v1/`` answer that is an error has the JSON body of
  ``errors.error_body``, including aiohttp's own 404 and 405; an exception
  outside shoal's hierarchy is logged here and answered ``500 internal``.
- Rule 3: requests are counted by route template (a fixed set) and status
  (the fixed set of ``errors.STATUS_OF_KIND`` plus 200/201/202), so the
  counter table is bounded; unmatched paths count under the route
  ``unmatched``.
- Rule 5: the scopes the gateway makes its node follow are bounded:
  :meth:`GatewayContext.admit_scope` lets in a scope the node follows
  already, or a new one while fewer than ``max_scopes`` were opened through
  the gateway (``SHOAL_GATEWAY_MAX_SCOPES``, default 64); each scope a node
  follows costs a watch stream and its whole membership, for as long as the
  node runs, so a token holder naming new scopes must not grow it without end.
- Rule 4: the token is ``SHOAL_GATEWAY_TOKEN``, else the contents of
  ``SHOAL_GATEWAY_TOKEN_FILE``, else derived from the cluster secret
  (:func:`derive_token`). A node with none of them answers every ``/v1/``
  request ``401`` saying how to configure one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client.registry import Collector

from shoal.errors import BadArgument, ConfigError, ShoalError
from shoal.gateway.errors import GatewayError, error_body
from shoal.runtime.checks import env_int

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from shoal.gateway.bodies import RequestLike
    from shoal.pid import Pid, Reason
    from shoal.runtime.cluster import ClusterView
    from shoal.runtime.groups import Groups
    from shoal.runtime.process import Behaviour
    from shoal.runtime.spin import BusyPoll
    from shoal.runtime.subscriptions import Subscription

__all__ = ["DEFAULT_MAX_BODY", "MAX_TIMEOUT", "GatewayContext", "GatewayMetrics",
           "GatewayNode", "derive_token", "is_loopback", "read_body", "resolve_token"]

log = logging.getLogger("shoal")

DEFAULT_MAX_BODY: Final = 1 << 20
"""Largest request body accepted, in bytes, unless ``SHOAL_GATEWAY_MAX_BODY`` says."""
MAX_WATCHES: Final = 1000
"""Most watch streams one node serves at once."""
MAX_TIMEOUT: Final = 300.0
"""Longest ``timeout`` a call may ask for, in seconds."""
TOKEN_LABEL: Final = b"shoal gateway token v1"
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})
MIN_TOKEN: Final = 16
DEFAULT_MAX_SCOPES: Final = 64
"""Most scopes the gateway opens on its node, unless ``SHOAL_GATEWAY_MAX_SCOPES`` says."""


class GatewayNode(Protocol):
    """The node, as the gateway uses it (``shoal.Node`` is one)."""

    name: str
    busy_poll: BusyPoll  # poked by the lean front's call traffic (front.py Rule 7)

    @property
    def running(self) -> bool: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def fenced(self) -> str | None: ...

    @property
    def cluster_view(self) -> ClusterView: ...

    def scope(self, name: str) -> Groups: ...

    async def open_scope(self, name: str, timeout: float = ...) -> Groups: ...

    def followed_scopes(self) -> list[str]: ...

    async def call(self, pid: Pid, request: Any, timeout: float = ...) -> Any: ...

    def cast(self, pid: Pid, request: Any) -> None: ...

    def send(self, pid: Pid, message: Any) -> None: ...

    # Member registrations (registry.py): their proxy processes.

    async def spawn(self, behaviour: type[Behaviour], *args: Any, **kwargs: Any) -> Pid: ...

    async def wait_exit(self, pid: Pid, timeout: float = ...) -> Reason: ...

    def exit(self, pid: Pid, reason: Reason) -> None: ...

    def whereis(self, name: str) -> Pid | None: ...

    def unregister(self, name: str) -> None: ...


def derive_token(secret: bytes) -> str:
    """The token derived from the cluster secret: ``hex(HMAC-SHA256(secret,
    "shoal gateway token v1"))``."""
    return hmac.new(secret, TOKEN_LABEL, hashlib.sha256).hexdigest()


def resolve_token(secret: Callable[[], bytes]) -> str:
    """The gateway's token (Rule 4); ``secret`` reads the cluster secret.

    Raises:
        ConfigError: the configured token is unreadable or shorter than 16
            characters, or no token is configured and there is no secret.
    """
    given = os.environ.get("SHOAL_GATEWAY_TOKEN")
    source = "SHOAL_GATEWAY_TOKEN"
    if not given and os.environ.get("SHOAL_GATEWAY_TOKEN_FILE"):
        path = Path(os.environ["SHOAL_GATEWAY_TOKEN_FILE"])
        source = str(path)
        try:
            given = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the gateway token file {path}: {exc}") from None
    if given:
        given = given.strip()
        if len(given) < MIN_TOKEN:
            raise ConfigError(f"the gateway token in {source} is shorter than {MIN_TOKEN} "
                              "characters")
        return given
    return derive_token(secret())


def max_body_from_env() -> int:
    """``SHOAL_GATEWAY_MAX_BODY`` (bytes, >= 1), else :data:`DEFAULT_MAX_BODY`.

    Raises:
        BadArgument: not an integer >= 1.
    """
    return env_int("SHOAL_GATEWAY_MAX_BODY", DEFAULT_MAX_BODY, 1,
                   expected="a number of bytes >= 1")


def max_scopes_from_env() -> int:
    """``SHOAL_GATEWAY_MAX_SCOPES`` (>= 1), else :data:`DEFAULT_MAX_SCOPES` (Rule 5).

    Raises:
        BadArgument: not an integer >= 1.
    """
    return env_int("SHOAL_GATEWAY_MAX_SCOPES", DEFAULT_MAX_SCOPES, 1,
                   expected="a number of scopes >= 1")


def is_loopback(host: str | None) -> bool:
    """Whether a client address is loopback (IPv4 127/8, ``::1``, or an
    IPv4-mapped loopback address); an unknown address is not."""
    if host in _LOOPBACK:
        return True
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class GatewayMetrics(Collector):
    """The gateway's counters, exported on ``/metrics`` (a prometheus-client
    collector): ``shoal_gateway_requests_total{route, status}`` and
    ``shoal_gateway_callback_timeouts_total`` (Rule 3 bounds the first)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.callback_timeouts = 0

    def count(self, route: str, status: int) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def callback_timed_out(self) -> None:
        """A member's callback did not answer before its call's deadline."""
        self.callback_timeouts += 1

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        requests = CounterMetricFamily("shoal_gateway_requests", "Gateway requests answered, "
                                       "by route template and HTTP status",
                                       labels=["route", "status"])
        for (route, status), value in sorted(self.requests.items()):
            requests.add_metric([route, str(status)], value)
        yield requests
        timeouts = CounterMetricFamily("shoal_gateway_callback_timeouts",
                                       "Calls to a member's callback URL given up at "
                                       "the call's deadline")
        timeouts.add_metric([], self.callback_timeouts)
        yield timeouts


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GatewayContext:
    """One node's gateway (see the module header).

    Args:
        node: the node it serves.
        token: the bearer token, or None when none could be configured
            (``token_problem`` says why; every request is refused).
        max_body: the largest request body, in bytes.
        allow_remote: serve clients that are not on loopback.
    """

    def __init__(self, node: GatewayNode, token: str | None, *, max_body: int = DEFAULT_MAX_BODY,
                 allow_remote: bool = False, token_problem: str = "",
                 max_scopes: int = DEFAULT_MAX_SCOPES) -> None:
        self.node = node
        self.max_scopes = max_scopes
        # Invariant: the scopes opened through the gateway that the node did
        # not follow before, at most max_scopes (Rule 5).
        self.opened_scopes: set[str] = set()
        # Invariant: the groups of each scope a request opened and found
        # loaded (a node follows a scope for as long as it runs), so a
        # request on it goes straight to them; its keys are admitted scopes,
        # so it holds at most max_scopes plus those the node followed itself.
        # Read by the routes (call_group goes straight to a loaded scope's
        # groups); written only by open_scope.
        self.loaded: dict[str, Groups] = {}
        self.token = token
        self.token_problem = token_problem
        self.max_body = max_body
        self.allow_remote = allow_remote
        self.metrics = GatewayMetrics()
        # Seconds between comment lines on a quiet watch stream (docs: 15).
        self.watch_heartbeat = 15.0
        self.max_watches = MAX_WATCHES
        self._expected = None if token is None else f"Bearer {token}".encode()
        # Invariant: the subscriptions of the watch streams open now, at most
        # max_watches; each is removed (and closed) when its stream ends,
        # however it ends.
        self.watches: set[Subscription] = set()

    def refusal(self, request: RequestLike) -> GatewayError | None:
        """Rule 1's checks before the body: the error to answer, or None."""
        node = self.node
        if node.stopping or not node.running or node.fenced is not None:
            return GatewayError(503, "unavailable", f"node {node.name!r} is not serving "
                                "(starting, draining or fenced)", True)
        remote = request.remote
        if not self.allow_remote and remote not in _LOOPBACK and not is_loopback(remote):
            return GatewayError(403, "forbidden", f"client {request.remote} is not on loopback; "
                                "start the node with --gateway-remote to serve it", True)
        if self._expected is None:
            return GatewayError(401, "unauthorized", self.token_problem, True)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            return GatewayError(401, "unauthorized", "missing or wrong token: send "
                                "'Authorization: Bearer TOKEN' (shoal gateway-token prints it)",
                                True)
        return None

    def admit_scope(self, name: str) -> None:
        """Let the gateway make its node follow scope ``name`` (Rule 5).

        Raises:
            GatewayError: ``400 bad_request`` when ``name`` would be one
                scope more than ``max_scopes`` opened through the gateway.
        """
        if name in self.opened_scopes or name in self.node.followed_scopes():
            return
        if len(self.opened_scopes) >= self.max_scopes:
            raise GatewayError(400, "bad_request", f"scope {name!r} would be one more than "
                               f"the {self.max_scopes} scopes this gateway may open on its "
                               "node (SHOAL_GATEWAY_MAX_SCOPES)", True)
        self.opened_scopes.add(name)

    def check_callback(self, url: str) -> None:
        """A member's ``callback_url`` must name a loopback host (an IP
        address or ``localhost``) unless the gateway serves remote clients:
        a token holder must not make the node post to any host it can reach.

        Raises:
            GatewayError: ``400 bad_request`` naming ``callback_url``.
        """
        host = urlsplit(url).hostname
        if self.allow_remote or host == "localhost" or is_loopback(host):
            return
        raise GatewayError(400, "bad_request", f"callback_url: {url!r} is not on loopback; "
                           "a gateway started without --gateway-remote calls back only its "
                           "own host's services", True)

    async def open_scope(self, name: str, timeout: float = 5.0) -> Groups:
        """The node's groups of scope ``name``, loaded (see :meth:`admit_scope`)."""
        groups = self.loaded.get(name)
        if groups is None:
            self.admit_scope(name)
            groups = self.loaded[name] = await self.node.open_scope(name, timeout)
        return groups

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Rules 1-3 for ``/v1/`` paths; other paths pass untouched."""
        if not request.path.startswith("/v1/"):
            return await handler(request)
        info = request.match_info
        route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
        status = 500
        try:
            refused = self.refusal(request)
            if refused is not None:
                raise refused
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
            answer = json_error(GatewayError(exc.status, kind, exc.reason, True))
            status = answer.status
            return answer
        except Exception as exc:
            answer = json_error(self.failure(exc, request.method, request.path))
            status = answer.status
            return answer
        finally:
            self.metrics.count(route, status)

    def failure(self, exc: Exception, method: str, path: str) -> tuple[int, bytes]:
        """Rule 2: the status and JSON body answering ``exc``; one outside
        shoal's hierarchy is logged (it is the gateway's fault)."""
        if not isinstance(exc, ShoalError):
            log.exception("gateway: %s %s failed", method, path, exc_info=exc)
        return self.failure_body(exc)

    @staticmethod
    def failure_body(exc: BaseException) -> tuple[int, bytes]:
        """The status and JSON body of ``exc``'s error answer."""
        status, body = error_body(exc)
        return status, json.dumps(body).encode()


def json_error(error: BaseException | tuple[int, bytes]) -> web.Response:
    """The JSON error answer of an exception, or of a status and body from
    :meth:`GatewayContext.failure` (always JSON, whatever was asked)."""
    if isinstance(error, BaseException):
        error = GatewayContext.failure_body(error)
    status, body = error
    response = web.Response(status=status, body=body, content_type="application/json")
    if status == 413:
        response.force_close()  # the rest of the body is never read
    return response


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes.

    Raises:
        GatewayError: ``413 too_large`` past the limit (Content-Length says
            so, or the bytes read do).
    """
    length = request.content_length
    if length is not None and length > limit:
        raise GatewayError(413, "too_large", f"the body of {length} bytes is over the limit "
                           f"of {limit} (SHOAL_GATEWAY_MAX_BODY)", True)
    if length is not None:
        if length == 0:
            return b""
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError:
            raise BadArgument("body", "...", f"{length} bytes, as Content-Length "
                              "said (the client closed the connection)") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, "too_large", f"the body is over the limit of {limit} "
                               "bytes (SHOAL_GATEWAY_MAX_BODY)", True)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
