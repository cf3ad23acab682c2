"""Regenerate gateway_vectors.json: ``python tests/pure/vectors/make_gateway_vectors.py``.

The gateway's conformance vectors (docs/gateway.md sections 2 and 4), for
every client and for this implementation (``test_gateway_vectors.py``):

- ``mapping``: each term in its JSON typed form and as msgpack (hex), the
  two bodies a client may send or receive for the same value; ``one_way``
  marks a term whose JSON form comes back as another term (a tuple comes
  back a list);
- ``invalid_json``: JSON bodies the gateway refuses ``400 bad_request``;
- ``errors``: every error kind with its status, ``retry_safe`` (``null``:
  as the error says) and an example body.

Regenerate only for a deliberate change of the contract (a new version),
and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shoal.errors import (
    BadArgument,
    BadRequest,
    CallError,
    CallTimeout,
    NodeDown,
    NoMembers,
    NoSuchProcess,
    Overloaded,
    ProcessExited,
    StoreUnavailable,
)
from shoal.gateway.errors import GatewayError, error_body
from shoal.gateway.jsonmap import to_json
from shoal.pid import Crash, Pid
from shoal.wire import pack_term

HERE = Path(__file__).parent
OUT = HERE / "gateway_vectors.json"

A = Pid.of("api-1", 7, 42)

MAPPING: list[tuple[str, Any, bool]] = [
    ("null", None, False),
    ("true", True, False),
    ("int", -17, False),
    ("int_2_53", 2**53, False),
    ("float", 1.5, False),
    ("string", "héllo", False),
    ("array", [1, "two", None], False),
    ("tuple_comes_back_a_list", (1, 2), True),
    ("object", {"a": 1, "b": [True]}, False),
    ("pid", A, False),
    ("bin", b"\x00\xffA", False),
    ("empty_bin", b"", False),
    ("crash", Crash(type="builtins.KeyError", message="'x'", traceback="Traceback ..."), False),
    ("map_with_dollar_keys", {"$pid": 1, "x": {"$bin": 2}}, False),
    ("map_with_bytes_keys", {b"\x01": "one", "s": 2}, False),
    ("nested", {"who": A, "what": [b"\x02", {"why": Crash(type="t", message="m",
                                                           traceback="")}]}, False),
]

INVALID_JSON: list[tuple[str, str]] = [
    ("not_json", '{"x": '),
    ("unknown_tag", '{"$nope": 1}'),
    ("tag_beside_another_key", '{"$pid": ["a", 1, 2], "x": 1}'),
    ("pid_not_three", '{"$pid": ["a", 1]}'),
    ("pid_negative", '{"$pid": ["a", -1, 2]}'),
    ("pid_empty_node", '{"$pid": ["", 1, 2]}'),
    ("bin_not_hex", '{"$bin": "zz"}'),
    ("bin_odd_length", '{"$bin": "abc"}'),
    ("crash_two_parts", '{"$crash": ["t", "m"]}'),
    ("map_not_object", '{"$map": [1]}'),
    ("kv_key_not_str_or_bin", '{"$kv": [[1, "one"]]}'),
    ("kv_not_pairs", '{"$kv": [["a"]]}'),
    ("nested_unknown_tag", '[1, {"a": {"$what": 0}}]'),
]

ERRORS: list[tuple[BaseException, bool | None]] = [
    (BadArgument("timeout", "-1", "seconds > 0 and at most 300"), True),
    (GatewayError(401, "unauthorized", "missing or wrong token", True), True),
    (GatewayError(403, "forbidden", "client 10.0.0.2 is not on loopback", True), True),
    (NoMembers("default", "prices"), True),
    (NoSuchProcess(A), True),
    (GatewayError(404, "not_found", "Not Found", True), True),
    (GatewayError(405, "method_not_allowed", "Method Not Allowed", True), True),
    (GatewayError(413, "too_large", "the body is over the limit", True), True),
    (GatewayError(415, "unsupported_media_type", "Content-Type 'text/plain'", True), True),
    (BadRequest("x", "no such sku"), False),
    (CallError(A, "builtins.ValueError", "boom", "Traceback ..."), False),
    (ProcessExited(A, "killed"), False),
    (GatewayError(502, "unencodable", "nan has no JSON form", False), False),
    (GatewayError(500, "internal", "the gateway failed handling the request", False), False),
    (Overloaded(A, 1000), True),
    (NodeDown("db-2", not_started=False), None),
    (StoreUnavailable("the store is down"), True),
    (CallTimeout("group 'prices'", 5), False),
]


def build() -> dict[str, Any]:
    mapping = [{"name": name, "json": to_json(term), "msgpack": pack_term(term).hex(),
                "one_way": one_way} for name, term, one_way in MAPPING]
    errors = []
    for exc, rule in ERRORS:
        status, body = error_body(exc)
        errors.append({"kind": body["error"]["kind"], "status": status, "retry_safe": rule,
                       "example": body})
    return {
        "version": 1,
        "notes": "docs/gateway.md: section 2 (the JSON mapping), section 4 (errors)",
        "mapping": mapping,
        "invalid_json": [{"name": n, "body": b} for n, b in INVALID_JSON],
        "errors": errors,
    }


def main() -> int:
    text = json.dumps(build(), indent=1, ensure_ascii=False) + "\n"
    if "--check" in sys.argv:
        return 0 if OUT.read_text(encoding="utf-8") == text else 1
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
