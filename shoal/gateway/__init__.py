"""The HTTP/JSON gateway: shoal for other languages (``docs/gateway.md``).

Served under ``/v1/`` by every node's HTTP endpoint (``runtime/observe.py``).
Modules: ``jsonmap`` (the JSON mapping, pure), ``errors`` (the error table,
pure), ``bodies`` (JSON or msgpack bodies), ``context`` (what routes share,
the middleware: token, loopback, body limit, error answers), ``callers``
(call, cast, send, members, watch), ``members`` (members in other
languages), ``server`` (mounting it on a node's endpoint), ``front`` and
``http11`` (the lean HTTP/1.1 front that serves calls, casts and sends and
hands other requests to aiohttp); ``member_spec``,
``registry``, ``proxy`` and ``callback`` (a registration's fields, the
registrations, their proxy processes, the HTTP client that calls members).
"""

from shoal.gateway import members, server

# Importing any module of the gateway runs this first: the members' routes
# are mounted with the callers' (see ``server.ROUTES``).
if members.add_routes not in server.ROUTES:
    server.ROUTES.append(members.add_routes)
