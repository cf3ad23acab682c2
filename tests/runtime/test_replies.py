"""ReplySlot, the answer of a call from another node: sent once, and not at
all once its caller's deadline passed, whoever sets it (the process loop,
or a handler's ``caller.reply``)."""

from __future__ import annotations

from collections import deque
from typing import Any

from shoal.pid import Pid
from shoal.runtime.replies import reply_slot


class FakePeer:
    def __init__(self) -> None:
        self.replies: list[tuple[int, Any, int]] = []
        self.serving = 1  # counted by Inbound when it read the CALL

    def send_reply(self, ref: int, value: Any, queue_len: int) -> None:
        self.replies.append((ref, value, queue_len))


class FakeCallee:
    def __init__(self) -> None:
        self.mailbox: deque[Any] = deque([1, 2])
        self.backlog = 0


PID = Pid.of("b", 1, 5)


def test_a_second_answer_sends_nothing_and_serving_is_released_once() -> None:
    peer, now = FakePeer(), [10.0]
    slot = reply_slot(peer, 7, PID, FakeCallee(), 11.0, lambda: now[0])  # type: ignore[arg-type]
    slot.set_result("first")
    slot.set_result("second")
    assert peer.replies == [(7, "first", 2)]
    assert slot.done() and peer.serving == 0


def test_an_answer_past_the_callers_deadline_is_not_sent() -> None:
    peer, now = FakePeer(), [10.0]
    slot = reply_slot(peer, 7, PID, FakeCallee(), 11.0, lambda: now[0])  # type: ignore[arg-type]
    now[0] = 11.5  # the caller gave up at 11.0
    slot.set_result("late")
    assert peer.replies == []
    assert slot.done() and peer.serving == 0
    slot.set_result("later still")
    assert peer.replies == [] and peer.serving == 0


def test_an_answer_without_a_deadline_is_sent_whenever_it_comes() -> None:
    peer, now = FakePeer(), [10.0]
    slot = reply_slot(peer, 7, PID, FakeCallee(), 0.0, lambda: now[0])  # type: ignore[arg-type]
    now[0] = 1e9
    slot.set_result("late but awaited")
    assert peer.replies == [(7, "late but awaited", 2)]
