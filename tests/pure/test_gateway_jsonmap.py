"""The gateway's JSON mapping (docs/gateway.md section 2) and error table (section 4)."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import pytest

import shoal.gateway
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
from shoal.gateway.errors import STATUS_OF_KIND, GatewayError, error_body
from shoal.gateway.jsonmap import from_json, to_json
from shoal.pid import Crash, Pid

P = Pid.of("api-1", 7, 42)

ROUND_TRIPS: list[tuple[Any, Any]] = [
    (None, None),
    (True, True),
    (-3, -3),
    (1.5, 1.5),
    ("text", "text"),
    ([1, [2, "x"]], [1, [2, "x"]]),
    ({"a": 1, "b": [None]}, {"a": 1, "b": [None]}),
    (P, {"$pid": ["api-1", 7, 42]}),
    (b"\x00\xff", {"$bin": "00ff"}),
    (Crash(type="builtins.KeyError", message="'x'", traceback="tb"),
     {"$crash": ["builtins.KeyError", "'x'", "tb"]}),
    ({"$pid": 1, "x": 2}, {"$map": {"$pid": 1, "x": 2}}),
    ({b"k": 1, "s": 2}, {"$kv": [[{"$bin": "6b"}, 1], ["s", 2]]}),
    ({"nested": {"who": P}}, {"nested": {"who": {"$pid": ["api-1", 7, 42]}}}),
]


@pytest.mark.parametrize(("term", "form"), ROUND_TRIPS)
def test_each_term_maps_to_its_typed_form_and_back(term: Any, form: Any) -> None:
    assert to_json(term) == form
    assert json.loads(json.dumps(to_json(term))) == form
    assert from_json(form) == term


def test_a_tuple_goes_as_an_array_and_comes_back_a_list() -> None:
    assert to_json((1, (P, "x"))) == [1, [{"$pid": ["api-1", 7, 42]}, "x"]]
    assert from_json(to_json((1, 2))) == [1, 2]


@pytest.mark.parametrize("form", [
    {"$nope": 1},
    {"$pid": 1, "x": 2},
    {"$pid": ["n", -1, 0]},
    {"$pid": ["n", 1]},
    {"$bin": "zz"},
    {"$bin": 12},
    {"$crash": ["t", "m"]},
    {"$map": [1]},
    {"$kv": [[1, 2]]},
    {"$kv": [["a"]]},
    [{"deep": {"$bad": None}}],
])
def test_a_bad_typed_value_is_refused_naming_it(form: Any) -> None:
    with pytest.raises(BadArgument):
        from_json(form)


def test_nesting_past_the_bound_is_refused() -> None:
    value: Any = 1
    for _ in range(300):
        value = [value]
    with pytest.raises(BadArgument):
        from_json(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, object(), {1: "one"},
                                   {"a": 1, (2, 3): 4}])
def test_what_json_cannot_hold_is_unencodable(value: Any) -> None:
    with pytest.raises(GatewayError) as caught:
        to_json([value])
    assert caught.value.kind == "unencodable"
    assert caught.value.status == 502


ERRORS: list[tuple[BaseException, int, str, bool]] = [
    (BadArgument("timeout", -1, "seconds"), 400, "bad_request", True),
    (NoMembers("default", "g"), 404, "no_members", True),
    (NoSuchProcess(P), 404, "noproc", True),
    (BadRequest("x"), 422, "rejected", False),
    (CallError(P, "builtins.ValueError", "boom", "tb"), 502, "crash", False),
    (ProcessExited(P, "killed"), 502, "exited", False),
    (Overloaded(P, 10), 503, "overloaded", True),
    (NodeDown("n2"), 503, "nodedown", True),
    (NodeDown("n2", not_started=False), 503, "nodedown", False),
    (StoreUnavailable("down"), 503, "unavailable", True),
    (CallTimeout("group 'g'", 5), 504, "timeout", False),
    (RuntimeError("bug"), 500, "internal", False),
]


@pytest.mark.parametrize(("exc", "status", "kind", "retry_safe"), ERRORS)
def test_every_error_has_one_status_kind_and_retry_rule(
        exc: BaseException, status: int, kind: str, retry_safe: bool) -> None:
    got_status, body = error_body(exc)
    assert (got_status, body["error"]["kind"], body["error"]["retry_safe"]) == (
        status, kind, retry_safe)
    assert STATUS_OF_KIND[kind] == status
    assert isinstance(body["error"]["message"], str)


def test_a_crash_names_its_class_and_member() -> None:
    _, body = error_body(CallError(P, "builtins.ValueError", "boom", "tb"))
    assert body["error"]["remote_type"] == "builtins.ValueError"
    assert body["error"]["member"] == {"$pid": ["api-1", 7, 42]}


def test_an_unknown_exception_keeps_its_text_out_of_the_body() -> None:
    _, body = error_body(RuntimeError("secret detail"))
    assert "secret detail" not in body["error"]["message"]


@pytest.mark.parametrize("name", ["jsonmap.py", "errors.py"])
def test_the_mapping_and_the_error_table_are_pure(name: str) -> None:
    tree = ast.parse((Path(shoal.gateway.__file__).parent / name).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    allowed = {"__future__", "math", "typing", "shoal.errors", "shoal.pid",
               "shoal.gateway.errors"}
    assert imported <= allowed, imported - allowed
