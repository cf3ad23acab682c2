"""``--log-format json``: one JSON object per log record, for log pipelines.

Stable fields, always present: ``time`` (ISO 8601, UTC, milliseconds),
``level``, ``logger``, ``node`` (the node's name, or null outside ``shoal
run``), ``event`` (a snake_case name, ``"log"`` for a record that is no
event) and ``message`` (the formatted text, as the text format shows it).
Then the event's own fields:

- a record logged with ``extra={"shoal_event": {...}}`` (the events a node
  logs: ``peer_connected``, ``peer_suspect``, ``peer_down``, ``peer_back``,
  ``store_session_lost``, ``store_session_reopened``, ``store_unavailable``,
  ``store_back``, ``fenced``, ``admin_action``, ``http_listening``) adds
  that dict's fields;
- a crash report (``record.shoal_crash``) is event ``process_crashed`` with
  ``pid``, ``reason``, ``behaviour``, ``kind``, ``handling``;
- a supervisor report (``record.shoal_supervisor``) is event
  ``supervisor_restarted``, ``supervisor_restart_failed`` or
  ``supervisor_gave_up`` with ``supervisor``, ``child_id``, ``reason``,
  ``restarts``, ``child_pid``;
- ``exc_info`` adds ``traceback``.

A value that is not JSON (a pid, a reason) is written as its ``str``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["LOG_FORMATS", "JsonFormatter"]

LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line (see the module header).

    Args:
        node: the node's name, written in every record's ``node`` field.
    """

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "node": self.node,
            "event": "log",
            "message": record.getMessage(),
        }
        event = getattr(record, "shoal_event", None)
        crash = getattr(record, "shoal_crash", None)
        report = getattr(record, "shoal_supervisor", None)
        if isinstance(event, dict):
            out.update({k: _plain(v) for k, v in event.items() if k not in _FIXED})
            out["event"] = str(event.get("event", "log"))
        elif crash is not None:
            out.update(event="process_crashed", pid=str(crash.pid), reason=str(crash.reason),
                       behaviour=crash.behaviour, kind=crash.kind, handling=crash.message)
            out["message"] = crash.line()  # the traceback goes in its own field
        elif report is not None:
            out.update(event=f"supervisor_{report.event}", supervisor=str(report.supervisor),
                       child_id=report.child_id, reason=str(report.reason),
                       restarts=report.restarts,
                       child_pid=None if report.pid is None else str(report.pid))
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        elif crash is not None and getattr(crash.reason, "traceback", None):
            out["traceback"] = crash.reason.traceback
        return json.dumps(out, default=str, ensure_ascii=False)


_FIXED = frozenset({"time", "level", "logger", "node", "message"})


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
