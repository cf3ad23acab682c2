"""The gateway's published vectors (tests/pure/vectors/gateway_vectors.json)
still hold, and agree with the contract in docs/gateway.md.

Every language client tests against the same file. A failure here is a bug,
or a contract change that needs a new version and regenerated vectors
(make_gateway_vectors.py).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from shoal.errors import BadArgument
from shoal.gateway.bodies import JSON, decode
from shoal.gateway.errors import STATUS_OF_KIND
from shoal.gateway.jsonmap import from_json, to_json
from shoal.wire import pack_term, unpack_term

VECTORS_DIR = Path(__file__).parent / "vectors"
VECTORS = json.loads((VECTORS_DIR / "gateway_vectors.json").read_text(encoding="utf-8"))
DOC = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"

_spec = importlib.util.spec_from_file_location("make_gateway_vectors",
                                               VECTORS_DIR / "make_gateway_vectors.py")
assert _spec is not None and _spec.loader is not None
generator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generator)


def test_the_file_is_what_the_generator_makes() -> None:
    assert json.loads(json.dumps(generator.build(), ensure_ascii=False)) == VECTORS


@pytest.mark.parametrize("vector", VECTORS["mapping"], ids=lambda v: v["name"])
def test_each_typed_form_and_its_msgpack_are_the_same_term(vector: dict[str, Any]) -> None:
    exact = unpack_term(bytes.fromhex(vector["msgpack"]))
    assert from_json(vector["json"]) == exact
    assert to_json(exact) == vector["json"]
    assert pack_term(from_json(vector["json"])).hex() == vector["msgpack"]


@pytest.mark.parametrize("vector", VECTORS["invalid_json"], ids=lambda v: v["name"])
def test_each_invalid_body_is_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(BadArgument):
        decode(vector["body"].encode(), JSON)


def test_the_errors_cover_every_kind_with_its_status() -> None:
    kinds = {v["kind"] for v in VECTORS["errors"]}
    assert kinds == set(STATUS_OF_KIND)
    for vector in VECTORS["errors"]:
        assert vector["status"] == STATUS_OF_KIND[vector["kind"]]
        error = vector["example"]["error"]
        assert error["kind"] == vector["kind"]
        if vector["retry_safe"] is not None:
            assert error["retry_safe"] is vector["retry_safe"]


def test_the_documented_error_table_is_the_one_served() -> None:
    rows = re.findall(r"^\| (\d{3}) \| `(\w+)` \| .* \| (true|false|as the error says) \|$",
                      DOC.read_text(encoding="utf-8"), flags=re.M)
    documented = {kind: int(status) for status, kind, _ in rows}
    assert documented == STATUS_OF_KIND
    rules = {kind: {"true": True, "false": False}.get(rule) for _, kind, rule in rows}
    assert rules == {v["kind"]: v["retry_safe"] for v in VECTORS["errors"]}
