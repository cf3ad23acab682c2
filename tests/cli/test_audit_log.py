"""The audit helper (shoal/cli/audit.py): a record written by one operator is
read back, newest first, by another reading the same store; a record that
cannot be written never hides the change's outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

import shoal
from shoal.cli import audit
from shoal.store import SqliteStore


async def _cluster(tmp_path: Path) -> str:
    db = tmp_path / "cluster.db"
    async with SqliteStore(db):
        pass
    return f"sqlite://{db}"


async def test_a_record_is_read_back_by_another_operator_newest_first(tmp_path: Path) -> None:
    url = await _cluster(tmp_path)
    first = await audit.record(url, None, command="evict", args={"group": "g"},
                               outcome="done", evidence={"plan": {"evict": ["<a.1.2>"]}})
    second = await audit.record(url, None, command="drain", args={"node": "n1"},
                                outcome="refused", why="no live node\nnamed 'n1'")
    rows = await audit.read(url, None, 10)
    assert [r["seq"] for r in rows] == [second, first]
    newest = rows[0]
    assert newest["command"] == "drain" and newest["outcome"] == "refused"
    assert newest["why"] == "no live node named 'n1'"  # one line
    assert {"v", "time", "user", "host", "args", "evidence"} <= set(newest)
    assert newest["time"].endswith("Z") and newest["user"] and newest["host"]
    assert rows[1]["evidence"] == {"plan": {"evict": ["<a.1.2>"]}}
    assert [r["seq"] for r in await audit.read(url, None, 1)] == [second]


async def test_no_record_is_written_where_there_is_no_cluster(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "cluster.db"
    with pytest.raises(shoal.StoreUnavailable, match="no cluster at"):
        await audit.record(f"sqlite://{missing}", None, command="drain", args={},
                           outcome="done")
    assert not missing.parent.exists()


def test_evidence_over_the_record_limit_is_replaced_by_a_note() -> None:
    value = audit.encode("reap", {}, "done", evidence={"remove": ["x" * 1000] * 400})
    assert b"over the" in value and len(value) < 2000


def test_an_unwritable_record_warns_after_the_outcome_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    note = audit.Audit(f"sqlite://{tmp_path / 'gone' / 'cluster.db'}", None, "drain",
                       {"node": "n1"})
    print("node n1 drained")
    with pytest.raises(SystemExit) as exit_info:
        note.done()
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert out == "node n1 drained\n"
    assert err.startswith("warning: the audit record could not be written: no cluster at")
    assert err.count("\n") == 1
