"""``shoal chaos``: exit codes, the report, and no process left behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from shoal.cli import main
from shoal.testing import LoadStats, Report, Violation
from shoal.testing.scenario import ChaosResult


def test_a_clean_run_prints_its_seed_faults_and_report_and_exits_0(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos", "--duration", "1", "--seed", "3", "--faults", "crash,reap",
                 "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["ok"] is True and result["violations"] == [] and result["seed"] == 3
    assert {f["kind"] for f in result["faults"]} == {"crash", "reap"}
    assert result["load"]["ok"] > 0 and result["load"]["failed"] == 0
    assert "rerun: shoal chaos --seed 3" in captured.err        # progress goes to stderr
    assert "reap: nothing to reap" in captured.err


def test_a_violation_is_printed_and_exits_1(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    planted = Violation(guarantee="G5", what="reap removed live member <n1.1.5> from "
                        "'service'", at=3.0, timeline=("t=3.000 reap removed <n1.1.5>",))

    async def fake_run(**kwargs: Any) -> ChaosResult:
        return ChaosResult(seed=kwargs["seed"], report=Report(
            violations=[planted], calls=10, failed=0, unknown_delivery=0),
            load=LoadStats(ok=10), faults=[], schedule=[])
    monkeypatch.setattr("shoal.cli.chaos.run_chaos", fake_run)
    assert main(["chaos", "--seed", "11", "--faults", "reap"]) == 1
    out = capsys.readouterr().out
    assert "seed: 11" in out and out.rstrip().endswith("t=3.000 reap removed <n1.1.5>")
    assert "violations: 1" in out and "G5 violated at t=3.000" in out


@pytest.mark.parametrize("args", [["--faults", "kill,nope"], ["--faults", ""],
                                  ["--nodes", "1"], ["--duration", "-1"]])
def test_bad_arguments_exit_2(args: list[str]) -> None:
    assert main(["chaos", *args]) == 2


def _children(parent: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.add(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_an_interrupted_run_stops_every_node_it_started(sig: signal.Signals) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.cli", "chaos", "--duration", "120", "--seed", "1",
        "--faults", "hang,crash", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=dict(os.environ))
    assert process.stdout is not None and process.stderr is not None
    nodes: set[int] = set()
    try:
        async with asyncio.timeout(60):
            while b" crash: " not in (line := await process.stdout.readline()) \
                    and b" hang " not in line:
                assert line, (await process.stderr.read()).decode()
        nodes = _children(process.pid)
        assert len(nodes) == 3
        process.send_signal(sig)
        assert await asyncio.wait_for(process.wait(), 60) == 1
        assert "every node process of the run was stopped" in \
            (await process.stderr.read()).decode()
        assert all(_gone(pid) for pid in nodes)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in nodes:  # what a failed run left behind, started by this test
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
