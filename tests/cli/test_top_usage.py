"""``shoal top``'s usage errors and a missing cluster, each one line; its
p99, rates and events from two samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shoal.cli import main
from shoal.cli.top import Sample, Watch, p99_ms


@pytest.mark.parametrize("flags", [["--interval", "0"], ["--interval", "nan"],
                                   ["--timeout", "-1"], ["--groups", "-3"],
                                   ["--groups", "201"], ["--interval", "soon"]])
def test_bad_arguments_exit_2_in_one_line(flags: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--once", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.strip()


def test_no_cluster_exits_1_in_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--once", "--json", "--store", f"sqlite://{tmp_path}/none.db"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"error: no cluster at {tmp_path}/none.db\n"


def test_p99_is_the_bound_of_the_bucket_holding_it_over_the_interval() -> None:
    bounds = [0.001, 0.01, 0.1]
    assert p99_ms(bounds, [5, 0, 0, 0], [5, 0, 0, 0]) is None  # no calls in between
    assert p99_ms(bounds, [1000, 0, 0, 0], [1098, 0, 2, 0]) == 100.0  # 2 of 100 in 0.1 s
    assert p99_ms(bounds, [1000, 0, 0, 0], [1099, 0, 1, 0]) == 1.0  # 1 of 100: p99 is fast
    assert p99_ms(bounds, [0, 0, 0, 0], [990, 10, 0, 0]) == 1.0
    assert p99_ms(bounds, [0, 0, 0, 0], [0, 0, 0, 7]) == 100.0  # past the last bound


def answer(creation: int, *, restarts: int = 0, local: int = 0, served: int = 0,
           remote: list[int] | None = None,
           admin: dict[str, int] | None = None) -> dict[str, Any]:
    """A ``stats`` answer as a node gives it (docs/protocol.md 3.5)."""
    outcomes = dict.fromkeys(("ok", "error", "timeout", "noproc", "nodedown", "overloaded"), 0)
    return {"node": "n", "creation": creation, "started": 1.0e9, "uptime_s": 1.0,
            "processes": 2, "mailbox_max": 0, "mailbox_sum": 0,
            "calls": {"local": {**outcomes, "ok": local}, "remote": dict(outcomes),
                      "group": dict(outcomes)},
            "served": served, "buckets": [0.001, 0.01],
            "durations": {"local": [0, 0, 0], "remote": remote or [0, 0, 0],
                          "group": [0, 0, 0]},
            "restarts": restarts, "admin_actions": admin or {},
            "peers": {"connected": 1, "suspect": 0, "down": 0},
            "suspects": [], "groups": [], "groups_omitted": 0}


def test_rates_over_the_interval_and_the_events_between_two_samples() -> None:
    watch = Watch()
    first = watch.update(Sample(10.0, {"a": answer(1), "b": answer(7), "c": "timed out"}))
    assert [r.get("calls_in_per_s") for r in first["nodes"]] == [None, None, None]
    assert first["events"] == []
    report = watch.update(Sample(12.0, {
        "a": answer(1, local=10, served=30, remote=[90, 10, 0], restarts=2),
        "b": "connection refused", "c": answer(3)}))
    rows = {r["node"]: r for r in report["nodes"]}
    assert rows["a"]["calls_in_per_s"] == 20.0  # (10 local + 30 served) / 2 s
    assert rows["a"]["calls_out_per_s"] == 5.0  # 10 local made / 2 s
    assert rows["a"]["p99_ms"] == 10.0
    assert rows["b"] == {"node": "b", "state": "down", "why": "connection refused"}
    assert rows["c"]["calls_in_per_s"] is None  # no earlier answer of c to compare
    assert [(e["node"], e["event"]) for e in report["events"]] == [
        ("a", "restarts"), ("b", "node_down"), ("c", "node_up")]
    again = watch.update(Sample(13.0, {"a": answer(2), "b": "connection refused",
                                       "c": answer(3)}))
    assert again["nodes"][0]["calls_in_per_s"] is None  # a new incarnation starts over
    assert again["events"][-1]["detail"] == "new incarnation 2 (was 1)"


def test_operators_actions_a_node_received_are_events_and_read_only_ones_are_not() -> None:
    watch = Watch()
    watch.update(Sample(1.0, {"a": answer(1, admin={"ping": 3}), "b": answer(1)}))
    report = watch.update(Sample(2.0, {
        "a": answer(1, admin={"ping": 9, "stats": 4, "evict": 2, "drain": 1}),
        "b": answer(1, admin={"reload": 1, "forget": 1})}))
    assert [(e["node"], e["event"], e["detail"]) for e in report["events"]] == [
        ("a", "admin", "2 x evict (a reap removed dead members)"),
        ("a", "admin", "1 x drain (a deploy or a shutdown)"),
        ("b", "admin", "1 x forget (a reap removed a dead node's records)"),
        ("b", "admin", "1 x reload (new code)")]
    # A node seen for the first time, or in a new incarnation, has no
    # earlier count to compare: only its arrival is an event.
    report = watch.update(Sample(3.0, {"a": answer(2, admin={"drain": 5}),
                                       "b": answer(1, admin={"reload": 1, "forget": 1}),
                                       "c": answer(1, admin={"evict": 1})}))
    assert [(e["node"], e["event"]) for e in report["events"][4:]] == [
        ("a", "node_up"), ("c", "node_up")]
