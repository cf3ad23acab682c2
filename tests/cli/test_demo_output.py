"""``shoal demo``'s report, displays, plot and usage errors, on results made by hand.

The real run (node processes, faults, Ctrl-C) is in tests/e2e/test_demo.py;
these check what a person reads and the exit code rule without a cluster.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from pathlib import Path

import pytest

from shoal.cli import main
from shoal.cli.demo_display import (
    LiveProgress,
    NodeState,
    PlainProgress,
    Tick,
    make_progress,
)
from shoal.cli.demo_metrics import DemoMetrics
from shoal.cli.demo_plot import plot
from shoal.cli.demo_report import (
    DemoFault,
    DemoResult,
    DemoSecond,
    exit_code,
    report_lines,
    to_json,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result(**changes: object) -> DemoResult:
    values: dict[str, object] = {
        "nodes": ("n1", "n2", "n3"), "callers": 16, "idempotent": True, "seconds": 21.4,
        "ok": 140_000, "failed": 0, "unknown": 0, "retried": 17,
        "p50_ms": 1.05, "p99_ms": 9.8,
        "per_second": tuple(DemoSecond(t=t, ok=0 if t in (7, 8) else 9000, failed=0,
                                       p50_ms=1.0, p99_ms=8.0) for t in range(17)),
        "faults": (
            DemoFault(kind="kill", node="n1", start=3.0, end=3.1, detail="kill -9",
                      excluded_after=0.007),
            DemoFault(kind="restart", node="n1", start=4.5, end=5.3, detail="incarnation 1 -> 2"),
            DemoFault(kind="hang", node="n2", start=6.4, end=9.5,
                      detail="SIGSTOP for 3.0s, then SIGCONT", excluded_after=1.001),
            DemoFault(kind="crash", node=None, start=10.4, end=10.5, detail="2 crashed"),
            DemoFault(kind="deploy", node=None, start=11.9, end=14.8, detail="3 restarted"),
            DemoFault(kind="reap", node=None, start=15.8, end=15.9,
                      detail="nothing to reap (12 live member(s))"),
        ),
        "os_pids": {"n1": [101, 104], "n2": [102], "n3": [103]},
    }
    values.update(changes)
    return DemoResult(**values)  # type: ignore[arg-type]


def test_a_clean_run_reports_its_figures_and_ends_with_violations_0() -> None:
    result = _result()
    lines = report_lines(result)
    text = "\n".join(lines)
    assert lines[-1] == "violations: 0"
    assert "140,000 ok, 0 failed, 17 retried" in text
    assert "p50 1.1 ms, p99 9.8 ms" in text
    assert "n1 (kill -9) 0.007 s; n2 (hung by SIGSTOP) 1.001 s" in text
    assert "nothing to reap (12 live member(s))" in text
    assert "the calls are marked idempotent" in text
    assert "verdict          passed" in text
    assert exit_code(result) == 0


def test_a_failure_the_fix_could_prevent_fails_the_demo() -> None:
    result = _result(failed=3, unknown=0, failures_by_error={"CallTimeout": 3})
    lines = report_lines(result)
    assert exit_code(result) == 1
    assert lines[-1] == "violations: 0"
    assert any("FAILED: 3 call(s) failed with a live member available" in line for line in lines)
    assert any("CallTimeout 3" in line for line in lines)


def test_unknown_delivery_failures_of_non_idempotent_calls_are_explained_not_failed() -> None:
    result = _result(idempotent=False, failed=2, unknown=2,
                     failures_by_error={"NodeDown": 1, "ProcessExited": 1})
    text = "\n".join(report_lines(result))
    assert exit_code(result) == 0
    assert "unknown delivery 2: non-idempotent calls in flight" in text
    assert "the one failure kind the fix cannot prevent" in text


def test_violations_are_printed_before_the_verdict_line_and_fail_the_demo() -> None:
    found = ("G2 violated at t=1.000: call 5 tried <n1.1.2> 3.0s after its node went down",
             "G6 violated at t=2.000: call 9 ended 0.5s past its deadline")
    result = _result(violations=found)
    lines = report_lines(result)
    assert exit_code(result) == 1
    assert lines[-1] == "violations: 2"
    assert lines[-3:-1] == list(found)


def test_json_has_the_figures_the_faults_and_every_node_process(
) -> None:
    value = json.loads(json.dumps(to_json(_result(failed=1, unknown=1, idempotent=False))))
    assert value["ok"] == 140_000 and value["failed"] == 1 and value["unknown"] == 1
    assert value["unexplained"] == 0 and value["passed"] is True
    assert value["os_pids"] == {"n1": [101, 104], "n2": [102], "n3": [103]}
    assert value["faults"][0] == {"kind": "kill", "node": "n1", "start": 3.0, "end": 3.1,
                                  "detail": "kill -9", "excluded_after": 0.007}
    assert value["violations"] == [] and len(value["per_second"]) == 17


URL = "http://127.0.0.1:9100/metrics"


def test_metrics_that_counted_the_same_calls_are_reported_as_agreeing() -> None:
    result = _result(failed=2, unknown=2, idempotent=False,
                     metrics=DemoMetrics(url=URL, ok=140_000, failed=2, timed=140_002))
    text = "\n".join(report_lines(result))
    assert f"metrics          {URL} counted the same group calls" in text
    assert exit_code(result) == 0
    assert to_json(result)["metrics"] == {"url": URL, "ok": 140_000, "failed": 2,
                                          "timed": 140_002, "error": ""}


@pytest.mark.parametrize("metrics", [
    DemoMetrics(url=URL, ok=139_999, failed=0, timed=139_999),   # a call not counted
    DemoMetrics(url=URL, ok=140_000, failed=1, timed=140_001),   # a failure the callers missed
    DemoMetrics(url=URL, ok=140_000, failed=0, timed=139_000),   # calls counted, not timed
])
def test_metrics_that_disagree_with_the_callers_fail_the_demo(metrics: DemoMetrics) -> None:
    result = _result(metrics=metrics)
    lines = report_lines(result)
    assert exit_code(result) == 1
    assert any("NOT the 140,000 ok and 0 failed the callers counted" in line for line in lines)
    assert any("/metrics did not count the calls the callers counted" in line for line in lines)


def test_metrics_that_could_not_be_read_fail_the_demo_and_say_why() -> None:
    result = _result(metrics=DemoMetrics(url=URL, error="ClientConnectorError: refused"))
    text = "\n".join(report_lines(result))
    assert exit_code(result) == 1
    assert f"{URL} could not be read: ClientConnectorError: refused" in text
    assert "/metrics could not be read" in text and "did not count" not in text


def _tick(t: float, **changes: object) -> Tick:
    nodes = (NodeState(name="n1", members=4, routable=True, in_flight=8),
             NodeState(name="n2", members=4, routable=False, in_flight=8))
    values: dict[str, object] = {"t": t, "ok": int(t * 1000), "failed": 0, "retried": 1,
                                 "rate": 1000, "p50_ms": 1.0, "p99_ms": 5.0, "nodes": nodes}
    values.update(changes)
    return Tick(**values)  # type: ignore[arg-type]


def test_plain_progress_prints_phases_events_and_one_line_of_figures_a_second() -> None:
    out = io.StringIO()
    progress = make_progress(out)  # a StringIO is no terminal
    assert isinstance(progress, PlainProgress)
    progress.phase(3, 6, "hang n2", "SIGSTOP for 3 s, then SIGCONT", t=6.4)
    for quarter in range(9):  # t = 6.50 ... 8.50: three whole seconds touched
        progress.tick(_tick(6.5 + quarter / 4))
    progress.event("n2 was silent", t=7.4)
    progress.tick(_tick(9.0, rate=0))  # no call answered in the last second
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "t=  6.4s == phase 3/6: hang n2: SIGSTOP for 3 s, then SIGCONT"
    figures = [line for line in lines if "calls/s" in line]
    assert len(figures) == 4
    assert "    0 calls/s" in figures[3] and "p50 -  p99 -" in figures[3]
    assert "hang n2" in figures[0]
    assert "n1 4/4 in flight 8 | n2 0/4 in flight 8" in figures[0]
    assert "t=  7.4s    n2 was silent" in lines
    assert "\x1b" not in out.getvalue()  # nothing redrawn, no escape codes


def test_live_progress_draws_a_panel_with_the_figures_and_members_per_node() -> None:
    out = io.StringIO()
    progress = make_progress(out, live=True)
    assert isinstance(progress, LiveProgress)
    progress.phase(2, 6, "kill -9 n1", "then restart it under its name", t=3.0)
    progress.tick(_tick(3.2, failed=0))
    progress.event("n1 killed", t=3.1)
    progress.close()
    text = out.getvalue()
    progress.close()
    assert out.getvalue() == text  # closed once, drawn once
    assert "\x1b[" in text  # drawn for a terminal
    assert "phase 2/6, kill -9 n1" in text
    assert "4/4 members routable" in text
    assert "0/4 members routable" in text
    assert "unroutable: silent or lost" in text


def _png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def test_plot_draws_a_png_of_the_run(tmp_path: Path) -> None:
    path = tmp_path / "demo.png"
    plot(_result(), path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert 10_000 < len(data) < 400_000
    assert _png_size(data) == (1000, 700)


def test_plot_without_matplotlib_is_a_clear_error_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert main(["demo", "--plot", str(tmp_path / "demo.png")]) == 2
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err
    assert "pip install 'shoal[demo]'" in err
    assert not (tmp_path / "demo.png").exists()


@pytest.mark.parametrize("argv", [
    ["demo", "--nodes", "2"],
    ["demo", "--callers", "0"],
    ["demo", "--scale", "0"],
    ["demo", "--plot", "/no/such/directory/demo.png"],
    ["demo", "--http", "no-port"],
    ["demo", "--http", "127.0.0.1:70000"],
])
def test_bad_demo_options_are_usage_errors(argv: list[str]) -> None:
    assert main(argv) == 2


def test_demo_help_documents_the_phases_and_exit_codes(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for words in ("kills a node with -9", "SIGSTOP", "rolling deploy", "reap",
                  "violations: N", "130 interrupted", "--plot FILE.png", "--json",
                  "--non-idempotent", "marked idempotent"):
        assert words in out
