"""How other commands find and talk to a running ``shoal up``.

Owns the state file (``.shoal/up-<cluster>.json`` beside the cluster file,
mode 0600) and the control protocol (docs/decisions.md, "shoal up, down
and deploy").

The state file says which OS process is the ``shoal up`` of the file (its
pid, its command line and its start time, read from ``/proc``), each
node's OS pid and state, and where the control listener is: a TCP port on
127.0.0.1 and a random token. Only someone who can read the file (its
owner: mode 0600) can send a control request.

The control protocol: connect, send one JSON line ``{"token": T, "op": OP,
...}``, read one JSON line back, the connection closes. Ops: ``status``
(the state) and ``restart`` (``"node": NAME``: stop the node gracefully if
it runs, SIGTERM then SIGKILL after the stop timeout, or with ``"drained":
true`` wait that long for it to exit by itself; start it again; answer once
the new process printed its ready line or failed; ``"timeout"`` bounds the
wait for the ready line, 30 s by default). Answers are ``{"ok": true,
...}`` or ``{"ok": false, "error": MESSAGE}``. A request line is at most
:data:`MAX_REQUEST` bytes.

Rules:

- Rule 1: nothing is signalled or trusted on the word of the state file
  alone: :func:`find_up` checks that the recorded pid is alive and is the
  same process (same command line, same start time) before any command
  uses it. A state file whose process is gone is stale, and said so.
- Rule 2: the file is replaced atomically (a private temporary file, then
  ``os.replace``), so a reader sees a whole old or a whole new state.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import shoal
from shoal._files import make_private_dirs, open_private

__all__ = ["MAX_REQUEST", "StaleState", "control", "find_up", "is_recorded_process",
           "proc_identity", "read_state", "remove_state", "write_state"]

MAX_REQUEST = 4096
"""Bytes of one control request line; a longer one is refused."""


class StaleState(shoal.ShoalError):
    """No ``shoal up`` runs for a cluster file (no state file, or a stale one)."""


def proc_identity(pid: int) -> tuple[list[str], str] | None:
    """The command line and start time (clock ticks since boot) of OS
    process ``pid``, or None when it does not run (or ``/proc`` cannot be
    read: then a process is never taken for the one recorded)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = stat[stat.rfind(")") + 2:].split()
    state, start = fields[0], fields[19]
    if state in ("Z", "X"):
        return None  # exited, not yet reaped by its parent
    return [a.decode(errors="replace") for a in cmdline.split(b"\0") if a], start


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically, mode 0600 (Rule 2)."""
    make_private_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = open_private(temporary, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as stream:
        json.dump(state, stream, indent=1)
    os.replace(temporary, path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content, or None when there is none (or it is not
    a state file: half a file is never written, Rule 2)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def remove_state(path: Path, up_pid: int) -> None:
    """Remove the state file if it is still the one of ``up_pid``."""
    state = read_state(path)
    if state is not None and state.get("up_pid") == up_pid:
        path.unlink(missing_ok=True)


def is_recorded_process(state: dict[str, Any]) -> bool:
    """Whether the state's ``up_pid`` is still the process that wrote it (Rule 1)."""
    pid = state.get("up_pid")
    if type(pid) is not int:
        return False
    identity = proc_identity(pid)
    return identity is not None and identity == (state.get("cmdline"), state.get("up_start"))


def find_up(path: Path, toml: Path) -> dict[str, Any]:
    """The state of the ``shoal up`` running for cluster file ``toml``.

    Raises:
        StaleState: no state file, or its process is not that ``shoal up``
            any more (the message says which, and what to do).
    """
    state = read_state(path)
    if state is None:
        raise StaleState(f"no shoal up is running for {toml} (no state file {path})")
    if state.get("file") != str(toml) or not is_recorded_process(state):
        listed = state.get("nodes")
        nodes: dict[str, Any] = listed if isinstance(listed, dict) else {}
        pids = ", ".join(f"{name} pid {info.get('os_pid')}" for name, info in
                         sorted(nodes.items()) if isinstance(info, dict)
                         and info.get("os_pid"))
        raise StaleState(f"stale state file {path}: its shoal up (pid {state.get('up_pid')}) "
                         f"is not running; remove the file"
                         + (f" (node processes it listed, not touched: {pids})" if pids else ""))
    return state


async def control(state: dict[str, Any], request: dict[str, Any], timeout: float
                  ) -> dict[str, Any]:
    """Send one control request to the ``shoal up`` of ``state``; its answer.

    Raises:
        ShoalError: it cannot be reached, or it answered ``ok: false`` (the
            message is its error).
        CallTimeout: no answer within ``timeout`` seconds.
    """
    where = state.get("control")
    if not isinstance(where, dict):
        raise StaleState("the state file names no control listener")

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(str(where.get("host")),
                                                       int(where.get("port", 0)))
        try:
            line = json.dumps({**request, "token": where.get("token")}).encode() + b"\n"
            writer.write(line)
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()

    try:
        raw = await asyncio.wait_for(exchange(), timeout)
    except TimeoutError:
        raise shoal.CallTimeout(f"shoal up (pid {state.get('up_pid')})", timeout) from None
    except OSError as exc:
        raise shoal.ShoalError(f"shoal up (pid {state.get('up_pid')}) cannot be reached: "
                               f"{exc}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise shoal.ShoalError(f"shoal up (pid {state.get('up_pid')}) gave no answer")
    if answer.get("ok") is not True:
        raise shoal.ShoalError(str(answer.get("error", "refused")))
    return answer
