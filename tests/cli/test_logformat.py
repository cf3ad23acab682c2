"""``--log-format json``: one JSON object per record, stable fields, and the
structured fields of events, crash reports and supervisor reports."""

from __future__ import annotations

import json
import logging

import pytest

import shoal
from shoal.cli import main
from shoal.cli.logformat import JsonFormatter
from shoal.runtime.childspec import SupervisorLog
from shoal.runtime.crashlog import CrashLog

PID = shoal.Pid("api-1", 7, 3)


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("shoal", logging.INFO, __file__, 1, msg, (), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_an_event_record_carries_its_fields_after_the_stable_ones() -> None:
    line = JsonFormatter("api-1").format(record(
        "connection to node api-2 lost", shoal_event={
            "event": "peer_down", "peer": "api-2", "peer_creation": 5, "reason": "reset",
            "node": "not-overridden"}))
    assert "\n" not in line
    out = json.loads(line)
    assert list(out)[:6] == ["time", "level", "logger", "node", "event", "message"]
    assert out["node"] == "api-1" and out["event"] == "peer_down" and out["level"] == "INFO"
    assert out["peer"] == "api-2" and out["peer_creation"] == 5 and out["reason"] == "reset"
    assert out["time"].endswith("Z")


def test_a_plain_record_is_event_log() -> None:
    out = json.loads(JsonFormatter(None).format(record("hello")))
    assert out["event"] == "log" and out["message"] == "hello" and out["node"] is None


def test_a_crash_report_keeps_its_structured_fields_and_traceback() -> None:
    try:
        raise KeyError("k")
    except KeyError as exc:
        crash = shoal.Crash.from_exception(exc)
    report = CrashLog(PID, crash, "app.Worker", "call", "'get'")
    out = json.loads(JsonFormatter("api-1").format(record(
        "%s\n%s", shoal_crash=report)))
    assert out["event"] == "process_crashed" and out["pid"] == str(PID)
    assert out["behaviour"] == "app.Worker" and out["kind"] == "call"
    assert out["handling"] == "'get'" and "KeyError" in out["traceback"]
    assert "\n" not in out["message"]


def test_a_supervisor_report_names_its_event() -> None:
    report = SupervisorLog(PID, "restarted", "worker", shoal.NORMAL, 2, shoal.Pid("api-1", 7, 9))
    out = json.loads(JsonFormatter("api-1").format(record("restarted", shoal_supervisor=report)))
    assert out["event"] == "supervisor_restarted" and out["child_id"] == "worker"
    assert out["restarts"] == 2 and out["child_pid"] == "<api-1.7.9>"


def test_a_bad_log_format_is_bad_usage(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--log-format", "xml", "nodes"]) == 2
    assert "log-format" in capsys.readouterr().err
    monkeypatch.setenv("SHOAL_LOG_FORMAT", "xml")
    assert main(["nodes", "--store", "memory://"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SHOAL_LOG_FORMAT" in err
