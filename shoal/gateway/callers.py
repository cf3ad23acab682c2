"""The callers' routes: call, cast and send to a group or a pid, read and
watch a group's members (``docs/gateway.md`` section 3).

Owns no state but the watch streams, each held in ``ctx.watches`` while it
is open and closed in its ``finally`` (the client went away, the node
stops, the subscription overflowed), and the ``Shoal-Member`` header of the
members that answered last (at most :data:`MAX_MEMBERS`, forgotten all at
once when full).

Rules:

- Rule 1: a group call is ``Groups.call`` itself, so its retries are
  exactly G3's; its deadline is the request's ``timeout`` (query, else
  header ``Shoal-Timeout``, else 5 s, at most 300 s) for all attempts.
- Rule 2: options come from the query string first, then the ``Shoal-*``
  headers; a bad one is ``400`` naming it, before anything is sent.
- Rule 3: a watch sends the members first, then each join and leave, and a
  comment line every ``ctx.watch_heartbeat`` seconds (:data:`HEARTBEAT`, 15)
  when nothing else was sent.
  A client that reads too slowly (its subscription overflows) gets an
  ``overflow`` event and the stream ends: it watches again. At most
  ``ctx.max_watches`` streams are open at once (``ctx.watches`` is bounded);
  one more is refused ``503 overloaded`` before anything is subscribed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from shoal.errors import BadArgument, ShoalError
from shoal.gateway.bodies import (
    Answer,
    RequestLike,
    answer,
    body_term,
    decode,
    request_format,
    respond,
    to_response,
)
from shoal.gateway.context import MAX_TIMEOUT, GatewayContext, read_body
from shoal.gateway.errors import GatewayError
from shoal.gateway.jsonmap import to_json
from shoal.membership.strategies import STRATEGIES
from shoal.pid import Pid
from shoal.runtime.subscriptions import SubscriptionOverflow

__all__ = ["DEFAULT_TIMEOUT", "HEARTBEAT", "HOT_ROUTES", "Core", "add_routes"]

DEFAULT_TIMEOUT: Final = 5.0
HEARTBEAT: Final = 15.0
"""Seconds between comment lines on a quiet watch stream."""


OPTION_HEADERS: Final = {name: f"shoal-{name}"
                         for name in ("timeout", "strategy", "key", "idempotent")}
"""The options' headers, by lower-case name (as every route reads headers)."""


def _option(request: RequestLike, name: str) -> str | None:
    value = request.query.get(name) if request.query_string else None
    if value is None:
        value = request.headers.get(OPTION_HEADERS[name])
    return value


def _timeout(request: RequestLike) -> float:
    raw = _option(request, "timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_TIMEOUT:
        raise BadArgument("timeout", raw, f"seconds > 0 and at most {MAX_TIMEOUT:g}")
    return seconds


def _routing(request: RequestLike) -> tuple[str, str | None]:
    strategy = _option(request, "strategy") or "local_first"
    if strategy not in STRATEGIES:
        raise BadArgument("strategy", strategy, f"one of {', '.join(sorted(STRATEGIES))}")
    key = _option(request, "key")
    if strategy == "hash" and key is None:
        raise BadArgument("key", None, "a key (query 'key' or header Shoal-Key) for 'hash'")
    return strategy, key


def _idempotent(request: RequestLike) -> bool:
    raw = _option(request, "idempotent")
    if raw is None or raw.lower() == "false":
        return False
    if raw.lower() == "true":
        return True
    raise BadArgument("idempotent", raw, "'true' or 'false'")


def _pid(request: RequestLike) -> Pid:
    return Pid.parse(request.match_info["pid"])


Read = Callable[[], Awaitable[bytes]] | bytes
"""The request's body (the lean front has read it whole), or a way to read
it (within the limit), called once the options passed."""
Core = Callable[[GatewayContext, RequestLike, Read], Awaitable[Answer]]
"""A route served by both HTTP layers: the request, its body, the answer."""


async def _body(request: RequestLike, read: Read) -> tuple[Any, str]:
    fmt = request_format(request)
    return decode(read if isinstance(read, bytes) else await read(), fmt), fmt


async def call_group(ctx: GatewayContext, request: RequestLike, read: Read) -> Answer:
    info = request.match_info
    scope, group = info["scope"], info["group"]
    headers = request.headers
    if request.query_string or "shoal-timeout" in headers or "shoal-strategy" in headers \
            or "shoal-key" in headers or "shoal-idempotent" in headers:
        timeout, (strategy, key), idempotent = (_timeout(request), _routing(request),
                                                _idempotent(request))
    else:  # no option given: the defaults, without looking each one up again
        timeout, strategy, key, idempotent = DEFAULT_TIMEOUT, "local_first", None, False
    term, fmt = body_term(request, read) if isinstance(read, bytes) \
        else await _body(request, read)
    answered: list[Pid] = []

    def observe(pid: Pid, _start: float, _end: float, error: ShoalError | None) -> None:
        if error is None:
            answered.append(pid)
    groups = ctx.loaded.get(scope)
    if groups is None:
        groups = await ctx.open_scope(scope, timeout)  # a node follows what it opens
    reply = await groups.call(group, term, timeout=timeout, strategy=strategy,
                              key=key, idempotent=idempotent, observe=observe)
    return answer(request, reply, fmt, headers=_member(answered[-1]) if answered else None)


MAX_MEMBERS: Final = 1024
"""Most members whose ``Shoal-Member`` header :func:`_member` keeps (then it forgets them all)."""
MEMBER_CACHE: dict[Pid, dict[str, str]] = {}


def _member(pid: Pid) -> dict[str, str]:
    """The headers naming the member that answered (read only: shared between answers)."""
    headers = MEMBER_CACHE.get(pid)
    if headers is None:
        if len(MEMBER_CACHE) >= MAX_MEMBERS:
            MEMBER_CACHE.clear()
        headers = MEMBER_CACHE[pid] = {"Shoal-Member": str(pid)}
    return headers


async def call_pid(ctx: GatewayContext, request: RequestLike, read: Read) -> Answer:
    pid, timeout = _pid(request), _timeout(request)
    term, fmt = await _body(request, read)
    return answer(request, await ctx.node.call(pid, term, timeout), fmt)


async def cast_group(ctx: GatewayContext, request: RequestLike, read: Read) -> Answer:
    info = request.match_info
    scope, group = info["scope"], info["group"]
    strategy, key = _routing(request)
    term, fmt = await _body(request, read)
    member = (await ctx.open_scope(scope)).cast(group, term, strategy=strategy, key=key)
    return answer(request, {"member": member}, fmt, status=202)


async def cast_pid(ctx: GatewayContext, request: RequestLike, read: Read) -> Answer:
    pid = _pid(request)
    term, fmt = await _body(request, read)
    ctx.node.cast(pid, term)
    return answer(request, {}, fmt, status=202)


async def send_pid(ctx: GatewayContext, request: RequestLike, read: Read) -> Answer:
    pid = _pid(request)
    term, fmt = await _body(request, read)
    ctx.node.send(pid, term)
    return answer(request, {}, fmt, status=202)


HOT_ROUTES: Final[dict[str, Core]] = {
    "/v1/call/pid/{pid}": call_pid,
    "/v1/call/{scope}/{group}": call_group,
    "/v1/cast/pid/{pid}": cast_pid,
    "/v1/cast/{scope}/{group}": cast_group,
    "/v1/send/pid/{pid}": send_pid,
}
"""The POST routes that carry calls, casts and sends, by path template: the
lean front (``front.py``) serves them itself; every other route is aiohttp's."""


def add_routes(app: web.Application, ctx: GatewayContext) -> None:
    """Add the callers' routes (see the module header)."""
    node = ctx.node

    def route(core: Core) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return to_response(await core(ctx, request,
                                          lambda: read_body(request, ctx.max_body)))
        return handle

    async def members(request: web.Request) -> web.Response:
        scope, group = request.match_info["scope"], request.match_info["group"]
        pids = (await ctx.open_scope(scope)).get_members(group)
        view = node.cluster_view
        routable = [p for p in pids if p.node == node.name or view.is_routable(p.node)]
        fmt = "application/msgpack" if "msgpack" in request.headers.get("accept", "") \
            else "application/json"
        return respond(request, {"scope": scope, "group": group, "members": pids,
                                 "routable": routable}, fmt)

    async def watch(request: web.Request) -> web.StreamResponse:
        scope, group = request.match_info["scope"], request.match_info["group"]
        if len(ctx.watches) >= ctx.max_watches:
            raise GatewayError(503, "overloaded", f"this node serves {ctx.max_watches} watch "
                               "streams already; watch through another node or later", True)
        subscription = (await ctx.open_scope(scope)).subscribe(group)
        ctx.watches.add(subscription)
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                                   "Cache-Control": "no-cache"})
            await response.prepare(request)
            await response.write(_event("members", {"members": subscription.members}))
            while True:
                try:
                    event = await asyncio.wait_for(subscription.get(), ctx.watch_heartbeat)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                except StopAsyncIteration:
                    break
                except SubscriptionOverflow as exc:
                    await response.write(_event("overflow", {"message": str(exc)}))
                    break
                await response.write(_event(event.kind, {"pids": event.pids}))
            return response
        finally:
            subscription.close()
            ctx.watches.discard(subscription)

    router = app.router
    for path, core in HOT_ROUTES.items():
        router.add_post(path, route(core))
    router.add_get("/v1/members/{scope}/{group}", members)
    router.add_get("/v1/watch/{scope}/{group}", watch)


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(to_json(data))}\n\n".encode()
