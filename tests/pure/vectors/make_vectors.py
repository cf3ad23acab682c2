"""Regenerate wire_vectors.json and store_vectors.json:
``python tests/pure/vectors/make_vectors.py`` (``--check``: exit 1 if either differs).

The JSON is the contract other implementations test against; the test
``test_wire_vectors.py`` checks this implementation still produces and
accepts exactly these bytes. Regenerate only for a deliberate protocol change,
and review the diff.

Typed JSON values (JSON alone cannot say "bytes" or "pid"):
``{"$pid": [node, creation, serial]}``, ``{"$crash": [type, message,
traceback]}``, ``{"$bin": "<hex>"}``, ``{"$map": {...}}`` (a map with str
keys). Any other JSON value is itself (arrays are msgpack arrays).
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from shoal.membership.keys import LAYOUT, encode_members, member_key, scope_prefix
from shoal.pid import Crash, Pid
from shoal.wire import (
    Bye,
    Call,
    Cast,
    Connection,
    Demonitor,
    Down,
    Exit,
    Fail,
    HandshakeConfig,
    Link,
    Message,
    Monitor,
    Ping,
    Pong,
    Reply,
    Send,
    Unlink,
    encode_message,
    proof_digest,
    transcript,
)

HERE = Path(__file__).parent
OUT = HERE / "wire_vectors.json"
STORE_OUT = HERE / "store_vectors.json"

A = Pid.of("api-1", 7, 42)
B = Pid.of("db-2", 3, 1)


def to_json(value: Any) -> Any:
    """Typed JSON form of a term."""
    if type(value) is Pid:
        return {"$pid": list(value)}
    if type(value) is Crash:
        return {"$crash": [value.type, value.message, value.traceback]}
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, dict):
        return {"$map": {k: to_json(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json`."""
    if isinstance(value, dict):
        (tag, inner), *_ = value.items()
        if tag == "$pid":
            return Pid.of(*inner)
        if tag == "$crash":
            return Crash(type=inner[0], message=inner[1], traceback=inner[2])
        if tag == "$bin":
            return bytes.fromhex(inner)
        if tag == "$map":
            return {k: from_json(v) for k, v in inner.items()}
        raise ValueError(f"unknown tag {tag}")
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


MESSAGES: list[tuple[str, Message]] = [
    ("call", Call(ref=1, sender=A, to=B, request="incr", timeout_ms=5000)),
    ("call_no_sender", Call(ref=2**40, sender=None, to=B, request=None, timeout_ms=0)),
    (
        "call_nested_request",
        Call(ref=3, sender=A, to=B, request=["get", {"key": b"\x00\xff", "n": -1.5}], timeout_ms=1),
    ),
    ("reply", Reply(ref=1, value=6, queue_len=0)),
    ("reply_with_pid", Reply(ref=9, value=[A, "ok", True, False], queue_len=12)),
    ("fail_noproc", Fail(ref=1, kind="noproc", pid=B, detail=None, queue_len=0)),
    (
        "fail_crash",
        Fail(
            ref=1,
            kind="crash",
            pid=B,
            detail=["builtins.KeyError", "'x'", "Traceback"],
            queue_len=2,
        ),
    ),
    ("fail_exited", Fail(ref=1, kind="exited", pid=B, detail="killed", queue_len=0)),
    ("fail_overloaded", Fail(ref=1, kind="overloaded", pid=B, detail=1000, queue_len=1000)),
    ("fail_badrequest", Fail(ref=1, kind="badrequest", pid=B, detail="no such key", queue_len=0)),
    ("cast", Cast(to=B, request=["set", "k", 1])),
    ("send", Send(to=A, message={"event": "tick"})),
    ("monitor", Monitor(ref=5, watcher=A, target=B)),
    ("demonitor", Demonitor(ref=5, watcher=A, target=B)),
    (
        "down_crash",
        Down(
            ref=5,
            target=B,
            watcher=A,
            reason=Crash(type="builtins.ValueError", message="bad", traceback="tb"),
        ),
    ),
    ("down_noproc", Down(ref=6, target=B, watcher=A, reason="noproc")),
    ("link", Link(a=A, b=B)),
    ("unlink", Unlink(a=A, b=B)),
    ("exit", Exit(sender=B, to=A, reason="shutdown")),
    ("ping", Ping(seq=1)),
    ("pong", Pong(seq=1)),
    ("bye", Bye(reason="shutdown")),
]


def field_values(msg: Message) -> dict[str, Any]:
    return {f.name: to_json(getattr(msg, f.name)) for f in fields(msg)}  # type: ignore[arg-type]


# Bodies (without length prefix) that every decoder must reject.
INVALID: list[tuple[str, str, str]] = [
    ("not_msgpack", "c1", "malformed"),
    ("not_an_array", "a3616263", "array"),
    ("empty_array", "90", "array"),
    ("code_not_int", "91a13f", "unknown message type"),
    ("unknown_code", "911e", "unknown message type"),
    ("handshake_range_unknown", "9105", "unknown message type"),
    ("wrong_arity_ping", "931b0102", "fields"),
    ("wrong_field_type_ping", "921ba131", "seq"),
    ("negative_ref", "9411ff0100", "ref"),
    ("unknown_ext", "931400d40500", "ext"),  # Send to ext 5
    ("bad_pid_ext_payload", "9314d701" + "00" * 8 + "00", "pid"),
    ("int_map_key", "931400" + "810102", "map key"),
    ("trailing_bytes", "911b00", "malformed"),
    # FAIL to pid B whose kind is an array, not a str.
    ("fail_kind_not_a_str", "961201" + "91a66e6f70726f63" + "d70193a464622d320301" + "c000",
     "kind"),
    # EXIT from A to B whose reason is nested 300 deep (the limit is 256).
    ("exit_reason_too_deep", "941a" + "c7090193a56170692d31072a" + "d70193a464622d320301"
     + "91" * 300 + "c0", "nested"),
]


def build() -> dict[str, Any]:
    messages = []
    for name, msg in MESSAGES:
        frame = encode_message(msg)
        messages.append(
            {"name": name, "type": type(msg).__name__, "code": msg.code,
             "fields": field_values(msg), "frame": frame.hex()}
        )  # fmt: skip

    ignorable = {"name": "ignorable_code_64", "body": "92" + "40" + "a3" + b"new".hex()}

    secret = b"cluster-secret-for-vectors"
    nonce_i, nonce_a = bytes(range(32)), bytes(range(32, 64))
    initiator = HandshakeConfig(cluster="prod", node="api-1", creation=7, secret=secret)
    acceptor = HandshakeConfig(cluster="prod", node="db-2", creation=3, secret=secret)
    ci = Connection(initiator, initiator=True, random_bytes=lambda n: nonce_i)
    ca = Connection(acceptor, initiator=False, random_bytes=lambda n: nonce_a)
    hello = ci.data_to_send()
    ca.receive_data(hello)
    challenge = ca.data_to_send()
    ci.receive_data(challenge)
    proof_i = ci.data_to_send()
    ca.receive_data(proof_i)
    proof_a = ca.data_to_send()
    events = ci.receive_data(proof_a)
    assert ci.state == ca.state == "open", events
    inputs = {
        "version": 1, "min_version": 1, "max_version": 1, "cluster": "prod",
        "initiator": ("api-1", 7), "acceptor": ("db-2", 3),
        "initiator_nonce": nonce_i, "acceptor_nonce": nonce_a,
    }  # fmt: skip
    handshake = {
        "secret": secret.hex(),
        "initiator": {"cluster": "prod", "node": "api-1", "creation": 7,
                      "nonce": nonce_i.hex(), "versions": [1, 1]},
        "acceptor": {"cluster": "prod", "node": "db-2", "creation": 3,
                     "nonce": nonce_a.hex(), "versions": [1, 1]},
        "frames": [
            {"from": "initiator", "step": "HELLO", "frame": hello.hex()},
            {"from": "acceptor", "step": "CHALLENGE", "frame": challenge.hex()},
            {"from": "initiator", "step": "PROOF", "frame": proof_i.hex()},
            {"from": "acceptor", "step": "PROOF", "frame": proof_a.hex()},
        ],
        "initiator_transcript": transcript("initiator", **inputs).hex(),  # type: ignore[arg-type]
        "acceptor_transcript": transcript("acceptor", **inputs).hex(),  # type: ignore[arg-type]
        "initiator_digest": proof_digest(secret, "initiator", **inputs).hex(),
        "acceptor_digest": proof_digest(secret, "acceptor", **inputs).hex(),
    }  # fmt: skip
    return {
        "protocol_version": 1,
        "notes": "frame = u32 big-endian length + msgpack body; see docs/protocol.md",
        "messages": messages,
        "ignorable": ignorable,
        "invalid_bodies": [{"name": n, "body": h, "error": e} for n, h, e in INVALID],
        "handshake": handshake,
    }


STORE_CASES = [
    ("serials 64, 65 and 70 (joined 3 times): bucket 1", "default", "workers", 1,
     {64: 1, 65: 1, 70: 3}),
    ("a scope and a group that need percent-encoding", "jobs/eu", "résumé 1", 0, {5: 1}),
]


def build_store() -> dict[str, Any]:
    """Membership keys and values of layout 2 (docs/protocol.md section 8.2)."""
    members = []
    for note, scope, group, bucket, joins in STORE_CASES:
        node, creation = "api-1", 1732000000000000
        members.append({
            "note": note, "node": node, "creation": creation, "scope": scope,
            "group": group, "bucket": bucket,
            "joins": {str(serial): n for serial, n in joins.items()},
            "key": member_key(node, creation, scope, group, bucket),
            "scope_prefix": scope_prefix(scope),
            "value_hex": encode_members(bucket, joins).hex()})
    return {"layout": LAYOUT, "members": members}


def main() -> int:
    outputs = [(OUT, json.dumps(build(), indent=1, sort_keys=False) + "\n"),
               (STORE_OUT, json.dumps(build_store(), indent=2, ensure_ascii=False) + "\n")]
    if "--check" in sys.argv:
        return 0 if all(path.read_text(encoding="utf-8") == text
                        for path, text in outputs) else 1
    for path, text in outputs:
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
