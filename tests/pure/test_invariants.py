"""The invariant checker finds each kind of violation planted in a timeline,
and passes a timeline where the guarantees held. A checker that never
fails is worth nothing."""

from __future__ import annotations

import pytest

from shoal.pid import Pid
from shoal.testing.invariants import Bounds, RollingCheck, Timeline, check

A1, A2 = Pid("a", 1, 1), Pid("a", 1, 2)
B1 = Pid("b", 7, 1)


def healthy() -> Timeline:
    """Two nodes serve a group; node b dies at t=10; calls move to a at once."""
    t = Timeline()
    for pid in (A1, A2, B1):
        t.joined("g", pid, 0.0)
    t.call_started(1, "g", 1.0, 5.0)
    t.attempt(1, B1, 1.0, 1.01, "ok")
    t.call_ended(1, 1.01, "ok")
    t.node_down("b", 10.0)
    t.call_started(2, "g", 10.5, 5.0)
    t.attempt(2, B1, 10.5, 10.6, "failed")  # noticed within the bound: retried
    t.attempt(2, A1, 10.6, 10.61, "ok")
    t.call_ended(2, 10.61, "ok")
    t.call_started(3, "g", 9.9, 5.0)
    t.attempt(3, B1, 9.9, 10.2, "unknown")  # in flight on b when it died
    t.call_ended(3, 10.2, "unknown", "NodeDown")
    t.removed_by_tool("g", B1, 20.0, "reap")
    t.graceful_stop("a", 30.0, {A1, A2}, {A1, A2})
    return t


def test_a_timeline_that_kept_the_guarantees_passes_and_counts_unknown_delivery() -> None:
    report = check(healthy())
    assert report.ok, report.summary()
    assert (report.calls, report.failed, report.unknown_delivery) == (3, 1, 1)
    assert "violations: 0" in report.summary()


def test_g2_a_call_routed_to_a_member_long_after_its_node_died() -> None:
    t = healthy()
    t.call_started(4, "g", 14.0, 5.0)
    t.attempt(4, B1, 14.0, 14.5, "failed")
    t.attempt(4, A2, 14.5, 14.51, "ok")
    t.call_ended(4, 14.51, "ok")
    report = check(t, Bounds(routing_bound=2.5))
    assert [v.guarantee for v in report.violations] == ["G2"]
    violation = report.violations[0]
    assert "call 4" in violation.what and str(B1) in violation.what
    assert any("node b down" in line for line in violation.timeline)


def test_g3_a_failed_call_while_a_live_member_existed() -> None:
    t = healthy()
    t.call_started(5, "g", 12.0, 1.0)
    t.attempt(5, B1, 12.0, 12.1, "failed")
    t.call_ended(5, 12.1, "failed", "NoMembers")
    report = check(t)
    assert [v.guarantee for v in report.violations] == ["G3"]
    assert "NoMembers" in report.violations[0].what and "call 5" in report.violations[0].what


def test_g3_an_idempotent_call_of_unknown_delivery_should_have_been_retried() -> None:
    t = healthy()
    t.call_started(6, "g", 9.95, 5.0, idempotent=True)
    t.attempt(6, B1, 9.95, 10.2, "unknown")
    t.call_ended(6, 10.2, "unknown", "NodeDown")
    assert [v.guarantee for v in check(t).violations] == ["G3"]


def test_g3_no_violation_when_no_member_was_alive() -> None:
    t = Timeline()
    t.joined("g", B1, 0.0)
    t.node_down("b", 1.0)
    t.call_started(1, "g", 2.0, 1.0)
    t.call_ended(1, 2.0, "failed", "NoMembers")
    assert check(t).ok


def test_g5_a_tool_removed_a_live_member() -> None:
    t = healthy()
    t.removed_by_tool("g", A1, 21.0, "evict --inverted-filter")
    report = check(t)
    assert [v.guarantee for v in report.violations] == ["G5"]
    assert str(A1) in report.violations[0].what and "evict" in report.violations[0].what


def test_g6_a_call_that_outlived_its_deadline() -> None:
    t = healthy()
    t.call_started(7, "g", 40.0, 1.0)
    t.attempt(7, A1, 40.0, 41.9, "failed")
    t.call_ended(7, 41.9, "failed", "CallTimeout")
    report = check(t, Bounds(deadline_slack=0.25))
    assert "G6" in [v.guarantee for v in report.violations]
    assert any("0.900s past its deadline" in v.what for v in report.violations)


def test_a_reply_from_a_replaced_incarnation() -> None:
    t = healthy()
    t.incarnation_replaced("a", 1, 50.0)
    t.call_started(8, "g", 49.0, 5.0)
    t.attempt(8, A1, 49.0, 50.5, "ok")
    t.call_ended(8, 50.5, "ok")
    report = check(t)
    assert [v.guarantee for v in report.violations] == ["incarnation"]
    assert "replaced 0.500s earlier" in report.violations[0].what


def test_g4_a_process_that_did_not_run_terminate_in_a_graceful_stop() -> None:
    t = healthy()
    t.graceful_stop("a", 30.0, {A1, A2}, {A1})
    report = check(t)
    assert [v.guarantee for v in report.violations] == ["G4"]
    assert str(A2) in report.violations[0].what


@pytest.mark.parametrize("hung_for", [1.0, 5.0])
def test_a_hung_node_that_came_back_is_live_again(hung_for: float) -> None:
    t = Timeline()
    t.joined("g", B1, 0.0)
    t.node_down("b", 1.0, "SIGSTOP")
    t.node_up("b", 1.0 + hung_for)
    t.call_started(1, "g", 10.0, 1.0)
    t.attempt(1, B1, 10.0, 10.01, "ok")
    t.call_ended(1, 10.01, "ok")
    assert check(t).ok


def test_g2_a_down_incarnation_does_not_cover_the_one_that_replaced_it() -> None:
    # b (creation 7) is killed at 10 and restarted as creation 8; the callers
    # may route to the new incarnation as soon as it registers, before the
    # test records it up. An attempt on the old one still counts.
    t = Timeline()
    for pid in (A1, B1):
        t.joined("g", pid, 0.0)
    t.node_down("b", 10.0, creation=7)
    new = Pid("b", 8, 1)
    t.joined("g", new, 13.0)
    for call_id, pid in ((4, new), (5, B1)):
        t.call_started(call_id, "g", 13.1, 5.0)
        t.attempt(call_id, pid, 13.1, 13.2, "ok")
        t.call_ended(call_id, 13.2, "ok")
    t.incarnation_replaced("b", 7, 13.3)
    t.node_up("b", 13.3)
    report = check(t, Bounds(routing_bound=2.5))
    assert [(v.guarantee, str(B1) in v.what) for v in report.violations] == [("G2", True)]


def test_a_run_checked_in_parts_gets_the_whole_runs_verdict_and_drops_settled_calls() -> None:
    t = healthy()
    t.call_started(4, "g", 14.0, 5.0)                # G2 at 14: b is down since 10
    t.attempt(4, B1, 14.0, 14.5, "failed")
    t.attempt(4, A2, 14.5, 14.51, "ok")
    t.call_ended(4, 14.51, "ok")
    t.call_started(5, "g", 21.0, 1.0)                # G6: ends 2 s past its deadline
    t.attempt(5, A1, 21.0, 24.0, "ok")
    t.call_ended(5, 24.0, "ok")
    t.removed_by_tool("g", A1, 25.0, "evict")        # G5: A1 was live
    t.graceful_stop("b", 26.0, {B1}, set())          # G4: B1 never ran terminate
    t.call_started(6, "g", 27.0, 5.0)                # still in flight when checked
    expected = check(t)
    rolling = RollingCheck(t)
    rolling.settle(12.0)
    assert sorted(t.calls) == [4, 5, 6]              # calls 1 to 3 checked and dropped
    rolling.settle(20.0)
    assert sorted(t.calls) == [5, 6]
    report = rolling.report()
    assert [v.guarantee for v in report.violations] == ["G2", "G6", "G5", "G4"]
    assert report.violations == expected.violations
    assert (report.calls, report.failed, report.unknown_delivery) == \
        (expected.calls, expected.failed, expected.unknown_delivery)
