"""Members in other languages: registrations and their proxy processes
(``docs/gateway.md`` section 5).

Owns: the ``/v1/members`` routes that register, renew and remove a member.
"""

from __future__ import annotations

from aiohttp import web

from shoal.gateway.context import GatewayContext

__all__ = ["add_routes"]


def add_routes(app: web.Application, ctx: GatewayContext) -> None:
    """Add the members' routes to ``app``."""
    del app, ctx  # registrations are not served yet: the routes answer 404 not_found
