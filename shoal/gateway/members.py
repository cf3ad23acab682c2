"""Members in other languages: the ``/v1/members`` routes that register,
renew and remove a member (``docs/gateway.md`` section 5).

Owns: the routes and the stream of a stream registration; the
registrations themselves live in the gateway's ``Registry``
(``registry.py``), their proxies in ``proxy.py``.

Rules:

- Rule 1: ``POST /v1/members`` checks every field (``member_spec.py``)
  and starts the proxy before it answers anything: a bad field, a name in
  use or a full registry is a plain JSON error, never a stream.
- Rule 2 (stream): without ``ttl``, the answer is an event stream: event
  ``registered`` (``{"id", "pid"}``), then a comment line every
  :data:`HEARTBEAT` seconds, and event ``exited`` (``{"reason"}``) if the
  proxy exits first. The registration lives while the stream is open: the
  node's HTTP server cancels the handler the moment the client's
  connection is lost (closed, or its process died), and a heartbeat that
  cannot be written ends it too; either way the proxy exits
  (``registration_closed``) unless it is draining.
- Rule 3: ``PUT /v1/members/{id}`` renews a TTL registration (its body is
  not read) and answers as the ``201`` did; ``DELETE /v1/members/{id}``
  drains it and answers ``{"drained": N}`` once its proxy has exited.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from aiohttp import web

from shoal.errors import BadArgument
from shoal.gateway.bodies import decode, request_format, respond
from shoal.gateway.callback import CallbackClient
from shoal.gateway.context import GatewayContext, read_body
from shoal.gateway.errors import GatewayError
from shoal.gateway.jsonmap import to_json
from shoal.gateway.member_spec import parse_spec
from shoal.gateway.proxy import EXIT_STREAM_CLOSED
from shoal.gateway.registry import Registration, Registry, limit_from_env

__all__ = ["HEARTBEAT", "REGISTRY", "add_routes"]

HEARTBEAT: Final = 5.0
"""Seconds between comment lines on a registration's stream."""

REGISTRY: Final = web.AppKey("shoal_gateway_registry", Registry)
"""Where the app keeps its gateway's registrations."""


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(to_json(data), separators=(',', ':'))}\n\n".encode()


def add_routes(app: web.Application, ctx: GatewayContext) -> None:
    """Add the members' routes to ``app``; its shutdown ends every registration."""
    registry = Registry(ctx.node, CallbackClient(ctx.max_body),
                        ctx.metrics.callback_timed_out, limit_from_env())
    app[REGISTRY] = registry

    async def closing(_app: web.Application) -> None:
        await registry.close()

    app.on_shutdown.append(closing)

    async def register(request: web.Request) -> web.StreamResponse:
        fmt = request_format(request)
        try:
            body = decode(await read_body(request, ctx.max_body), fmt)
        except BadArgument as exc:  # malformed JSON or msgpack, a bad typed value
            raise GatewayError(400, "bad_request", f"body: {exc}", True) from None
        spec = parse_spec(body)
        ctx.check_callback(spec.callback_url)
        ctx.admit_scope(spec.scope)
        reg = await registry.register(spec)
        if spec.ttl is not None:
            return respond(request, reg.answer(), fmt, status=201)
        return await _stream(request, registry, reg)

    async def renew(request: web.Request) -> web.StreamResponse:
        reg = registry.renew(request.match_info["id"])
        return respond(request, reg.answer(), request_format(request))

    async def remove(request: web.Request) -> web.StreamResponse:
        drained = await registry.drain(request.match_info["id"])
        return respond(request, {"drained": drained}, request_format(request))

    app.router.add_post("/v1/members", register)
    app.router.add_put("/v1/members/{id}", renew)
    app.router.add_delete("/v1/members/{id}", remove)


async def _stream(request: web.Request, registry: Registry,
                  reg: Registration) -> web.StreamResponse:
    """Rule 2: the stream that keeps ``reg`` alive."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    try:
        await response.prepare(request)
        await response.write(_event("registered", {"id": reg.id, "pid": reg.pid}))
        while True:
            done, _ = await asyncio.wait({reg.exited}, timeout=HEARTBEAT)
            if done:
                await response.write(_event("exited", {"reason": str(reg.exited.result())}))
                break
            await response.write(b": alive\n\n")
    except (ConnectionError, OSError):
        pass  # the client is gone: the finally ends its registration
    finally:
        # Cancelled (the connection was lost), a write failed, or it exited.
        registry.end(reg, EXIT_STREAM_CLOSED)
    return response
