"""The published test vectors (tests/pure/vectors/wire_vectors.json) still hold.

Other implementations test against the same file; docs/protocol.md quotes it.
If a test here fails, either the change is a bug or it is a protocol change
that needs a new version and regenerated vectors (make_vectors.py).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from shoal.errors import ProtocolError
from shoal.wire import (
    MESSAGE_TYPES,
    Connection,
    Established,
    HandshakeConfig,
    decode_body,
    encode_message,
    proof_digest,
    transcript,
)

VECTORS_DIR = Path(__file__).parent / "vectors"
VECTORS = json.loads((VECTORS_DIR / "wire_vectors.json").read_text())

_spec = importlib.util.spec_from_file_location("make_vectors", VECTORS_DIR / "make_vectors.py")
assert _spec is not None and _spec.loader is not None
make_vectors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_vectors)

CLASSES = {cls.__name__: cls for cls in MESSAGE_TYPES}


def build(vector: dict[str, Any]) -> Any:
    cls = CLASSES[vector["type"]]
    return cls(**{k: make_vectors.from_json(v) for k, v in vector["fields"].items()})


@pytest.mark.parametrize("vector", VECTORS["messages"], ids=lambda v: v["name"])
def test_encoder_produces_the_vector_bytes(vector: dict[str, Any]) -> None:
    assert encode_message(build(vector)).hex() == vector["frame"]


@pytest.mark.parametrize("vector", VECTORS["messages"], ids=lambda v: v["name"])
def test_decoder_reads_the_vector_bytes(vector: dict[str, Any]) -> None:
    frame = bytes.fromhex(vector["frame"])
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode_body(frame[4:]) == build(vector)


def test_vectors_cover_every_message_type() -> None:
    assert {v["type"] for v in VECTORS["messages"]} == set(CLASSES)


@pytest.mark.parametrize("vector", VECTORS["invalid_bodies"], ids=lambda v: v["name"])
def test_decoder_rejects_the_invalid_vectors(vector: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_body(bytes.fromhex(vector["body"]))
    assert vector["error"] in str(caught.value)


def test_ignorable_vector_is_skipped() -> None:
    assert decode_body(bytes.fromhex(VECTORS["ignorable"]["body"])) is None


def test_handshake_vector_with_fixed_secret_and_nonces() -> None:
    hs = VECTORS["handshake"]
    secret = bytes.fromhex(hs["secret"])

    def side(role: str) -> Connection:
        info = hs[role]
        nonce = bytes.fromhex(info["nonce"])
        config = HandshakeConfig(cluster=info["cluster"], node=info["node"],
                                 creation=info["creation"], secret=secret)  # fmt: skip
        return Connection(config, initiator=role == "initiator", random_bytes=lambda n: nonce)

    conns = {"initiator": side("initiator"), "acceptor": side("acceptor")}
    other = {"initiator": "acceptor", "acceptor": "initiator"}
    events: list[Any] = []
    for step in hs["frames"]:
        sent = conns[step["from"]].data_to_send()
        assert sent.hex() == step["frame"], step["step"]
        events += conns[other[step["from"]]].receive_data(sent)
    assert sum(isinstance(e, Established) for e in events) == 2
    assert conns["initiator"].state == conns["acceptor"].state == "open"

    inputs = {
        "version": 1, "min_version": 1, "max_version": 1, "cluster": "prod",
        "initiator": ("api-1", 7), "acceptor": ("db-2", 3),
        "initiator_nonce": bytes.fromhex(hs["initiator"]["nonce"]),
        "acceptor_nonce": bytes.fromhex(hs["acceptor"]["nonce"]),
    }  # fmt: skip
    assert transcript("initiator", **inputs).hex() == hs["initiator_transcript"]
    assert transcript("acceptor", **inputs).hex() == hs["acceptor_transcript"]
    assert proof_digest(secret, "initiator", **inputs).hex() == hs["initiator_digest"]
    assert proof_digest(secret, "acceptor", **inputs).hex() == hs["acceptor_digest"]
    assert hs["initiator_digest"] in hs["frames"][2]["frame"]
    assert hs["acceptor_digest"] in hs["frames"][3]["frame"]


def test_vector_file_is_what_the_generator_produces() -> None:
    expected = json.dumps(make_vectors.build(), indent=1) + "\n"
    assert (VECTORS_DIR / "wire_vectors.json").read_text() == expected
