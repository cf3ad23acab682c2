"""The HTTP/JSON gateway: shoal for other languages (``docs/gateway.md``).

Served under ``/v1/`` by every node's HTTP endpoint (``runtime/observe.py``).
Modules: ``jsonmap`` (the JSON mapping, pure), ``errors`` (the error table,
pure), ``bodies`` (JSON or msgpack bodies), ``context`` (what routes share,
the middleware: token, loopback, body limit, error answers), ``callers``
(call, cast, send, members, watch), ``members`` (members in other
languages), ``server`` (mounting it on a node's endpoint).
"""
