"""A node's HTTP endpoint for operators: ``/metrics``, ``/healthz``, ``/readyz``.

Off by default; on with ``Node(http="HOST:PORT")``, ``SHOAL_HTTP`` or
``shoal run --http HOST:PORT``. Served by aiohttp on the node's own event
loop (so ``/healthz`` tells whether that loop answers), started after the
node registered and stopped at the very end of its stop, so a drain answers
503 on ``/readyz`` while it lasts. ``/metrics`` is prometheus-client's text
format from :class:`~shoal.runtime.metrics.NodeCollector`, in a registry of
its own (never the process-wide default one: two nodes in one program
export separately).

Answers: ``/healthz`` and ``/readyz`` answer 200 ``ok`` or 503 with one
line per problem (``health.py`` says when); any other path is 404. These
three take GET only, from anyone who can reach the address: bind it to
an address only the scraper and the orchestrator reach.

The HTTP/JSON gateway (``shoal/gateway/``, ``docs/gateway.md``) is mounted
on the same application under ``/v1/`` when the node sets ``gateway``
before ``start`` (its own token and loopback rule guard it), and the
endpoint serves HTTPS when it sets ``ssl``. With the gateway, the endpoint
listens through the gateway's lean front (``gateway/front.py``), which
serves the call, cast and send routes itself and hands every other request's
connection to this aiohttp application. Handlers are cancelled when their
client disconnects, so a gateway call or watch stream ends with it.

Owns: the aiohttp runner, its site or the gateway's front, and the loop-lag
probe task.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shoal.errors import BadArgument
from shoal.runtime.checks import env_float, env_int
from shoal.runtime.health import DEFAULT_LAG_BOUND, LoopProbe, Readiness
from shoal.runtime.metrics import DEFAULT_TOP_GROUPS, MetricsParts, NodeCollector

if TYPE_CHECKING:
    import ssl

    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from shoal.gateway.context import GatewayContext
    from shoal.gateway.front import Front

__all__ = ["Observer", "parse_http"]

log = logging.getLogger("shoal")


def parse_http(value: str | None) -> tuple[str, int] | None:
    """``"HOST:PORT"`` (port 0: any free port) to a pair; None stays None.

    Raises:
        BadArgument: (argument ``http``) not ``HOST:PORT`` with a port in 0-65535.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadArgument("http", value, "'HOST:PORT', e.g. '0.0.0.0:9100'")
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise BadArgument("http", value, "'HOST:PORT' with a port in 0-65535, "
                                         "e.g. '0.0.0.0:9100'")
    return host, int(port)


class Observer:
    """The endpoint's server (see the module header).

    Args:
        name: the node's name (for the log line).
        address: where to listen, from :func:`parse_http`.
        parts: what ``/metrics`` reads.
        readiness: what ``/readyz`` asks.
    """

    def __init__(self, name: str, address: tuple[str, int], parts: MetricsParts,
                 readiness: Readiness) -> None:
        self.name = name
        self.address = address
        self.readiness = readiness
        self.probe = LoopProbe(env_float("SHOAL_HEALTH_LAG", DEFAULT_LAG_BOUND, 0.01))
        self.collector = NodeCollector(parts, env_int(
            "SHOAL_METRICS_TOP_GROUPS", DEFAULT_TOP_GROUPS, 1))
        self._runner: web.AppRunner | None = None
        self._front: Front | None = None
        self._registry: CollectorRegistry | None = None
        # Invariant: the address bound (the real port for port 0), once started.
        self.bound: tuple[str, int] | None = None
        # Set by the node before start: the gateway to mount, the TLS to serve.
        self.gateway: GatewayContext | None = None
        self.ssl: ssl.SSLContext | None = None

    async def start(self) -> None:
        """Listen (raises ``OSError`` when the address cannot be bound)."""
        from aiohttp import web
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        self._registry = registry
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self.gateway is not None:
            from shoal.gateway.server import mount

            mount(app, self.gateway)
            registry.register(self.gateway.metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               handler_cancellation=True)
        await runner.setup()
        host, port = self.address
        try:
            if self.gateway is not None and runner.server is not None:
                from shoal.gateway.front import Front

                front = Front(self.gateway, runner.server)
                port = await front.start(host, port, self.ssl)
                self._front = front
            else:
                site = web.TCPSite(runner, host, port, ssl_context=self.ssl)
                await site.start()
                bound = runner.addresses  # the real port when asked for port 0
                host, port = bound[0][:2] if bound else self.address
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.bound = (host, port)
        self.probe.start()
        log.info("node %s: HTTP endpoint on %s://%s:%d (/metrics, /healthz, /readyz%s)",
                 self.name, "https" if self.ssl else "http", host, port,
                 ", /v1/ gateway" if self.gateway else "", extra={"shoal_event": {
                     "event": "http_listening", "address": f"{host}:{port}"}})

    async def stop(self) -> None:
        """Stop serving."""
        await self.probe.stop()
        front, self._front = self._front, None
        if front is not None:
            await front.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        assert self._registry is not None  # set by start, before the first request
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return _answer([p for p in [self.probe.problem()] if p is not None])

    async def _readyz(self, _request: web.Request) -> web.Response:
        return _answer(await self.readiness.problems())


def _answer(problems: list[str]) -> web.Response:
    from aiohttp import web

    if problems:
        return web.Response(status=503, text="\n".join(problems) + "\n")
    return web.Response(text="ok\n")
