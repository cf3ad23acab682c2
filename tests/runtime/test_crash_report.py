"""A crash is one structured log record: pid, class, reason, the message
being handled (bounded) and the traceback, read by a log handler from
``record.shoal_crash`` without parsing the text."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import shoal
from shoal.runtime.crashlog import MAX_MESSAGE_REPR


class Crashy(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        raise ValueError(f"call went wrong: {len(repr(request))}")

    async def handle_cast(self, request: Any) -> None:
        raise ValueError("cast went wrong")

    async def handle_info(self, message: Any) -> None:
        raise ValueError("info went wrong")

    async def code_change(self, old_version: Any, extra: Any) -> None:
        raise ValueError("cannot migrate")


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Collect(logging.Handler):
    """What a log pipeline sees: the records handed to a handler."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def crashes(self) -> list[tuple[shoal.CrashLog, str]]:
        return [(r.shoal_crash, self.format(r)) for r in self.records
                if isinstance(getattr(r, "shoal_crash", None), shoal.CrashLog)]


@pytest.fixture
def reports() -> Iterator[Collect]:
    handler = Collect()
    shoal_log = logging.getLogger("shoal")
    shoal_log.addHandler(handler)
    try:
        yield handler
    finally:
        shoal_log.removeHandler(handler)


async def test_a_crashing_call_is_one_record_with_pid_class_reason_message_and_traceback(
        node: shoal.Node, reports: Collect) -> None:
    pid = await node.spawn(Crashy)
    with pytest.raises(shoal.CallError):
        await node.call(pid, {"order": 42})
    [(crash, text)] = reports.crashes()
    reason = crash.reason
    assert crash.pid == pid
    assert (reason.type, reason.message) == ("builtins.ValueError", "call went wrong: 13")
    assert crash.behaviour == f"{__name__}.Crashy"
    assert (crash.kind, crash.message) == ("call", "{'order': 42}")
    first, *rest = text.splitlines()
    assert first == (f"process {pid} crashed: {reason} "
                     f"({__name__}.Crashy, handling call {{'order': 42}})")
    assert rest[0].startswith("Traceback") and "call went wrong" in rest[-1]


@pytest.mark.parametrize(("kind", "deliver"), [
    ("cast", lambda node, pid: node.cast(pid, ("job", 7))),
    ("info", lambda node, pid: node.send(pid, ("job", 7))),
])
async def test_a_crash_report_names_a_cast_or_a_sent_message(
        node: shoal.Node, reports: Collect, kind: str, deliver: Any) -> None:
    pid = await node.spawn(Crashy)
    deliver(node, pid)
    await node.wait_exit(pid)
    [(crash, _)] = reports.crashes()
    assert (crash.kind, crash.message) == (kind, "('job', 7)")


async def test_a_crash_in_code_change_is_reported_as_a_system_message(
        node: shoal.Node, reports: Collect) -> None:
    pid = await node.spawn(Crashy)
    with pytest.raises(shoal.CallError):
        await node.code_change(pid, "v1", "extra")
    [(crash, _)] = reports.crashes()
    assert crash.kind == "system"
    assert crash.message == "CodeChange(old_version='v1', extra='extra')"


async def test_the_message_in_a_crash_report_is_bounded(
        node: shoal.Node, reports: Collect) -> None:
    pid = await node.spawn(Crashy)
    with pytest.raises(shoal.CallError):
        await node.call(pid, "x" * 100_000)
    [(crash, text)] = reports.crashes()
    assert len(crash.message) <= MAX_MESSAGE_REPR and crash.message.startswith("'xxx")
    assert len(text.splitlines()[0]) < MAX_MESSAGE_REPR + 200


async def test_a_message_whose_repr_raises_is_still_reported(
        node: shoal.Node, reports: Collect) -> None:
    pid = await node.spawn(Crashy)
    node.send(pid, Unprintable())
    await node.wait_exit(pid)
    [(crash, _)] = reports.crashes()
    assert crash.message.startswith("<Unprintable instance at 0x")
