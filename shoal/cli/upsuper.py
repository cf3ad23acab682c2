"""``shoal up``: run every node of a cluster file as a ``shoal run`` child.

Owns the node processes it starts (one :class:`_Runner` each), the state
file of the file's cluster while it runs (``shoal/cli/upstate.py``) and the
control listener (127.0.0.1, a random port and token, one request per
connection, at most :data:`MAX_CLIENTS` at once).

Rules:

- Rule 1: a node that exits with a non-zero status or by a signal
  (``kill -9``) is started again after a delay from ``shoal/_backoff.py``;
  more than ``restart.max_restarts`` restarts within ``restart.window_s``
  and it is left stopped. Each exit and restart is logged.
- Rule 2: a node that exits 0 stopped on purpose (it was drained, or sent
  SIGTERM from outside): it is not started again until a control
  ``restart`` asks (``shoal deploy`` does, after its drain).
- Rule 3: on SIGTERM or SIGINT (Ctrl-C), or ``shoal down``, every node gets
  SIGTERM and ``restart.stop_timeout_s`` seconds to stop; then SIGKILL,
  logged. The children run in their own sessions, so Ctrl-C on the terminal
  reaches ``shoal up`` only, and it stops them in this order.
- Rule 4: every line a node writes (stdout and stderr) is printed on
  stdout prefixed with the node's name; ``shoal up``'s own lines with "up".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from shoal._backoff import backoff_delays
from shoal._usage_errors import ShoalError
from shoal.cli.upfile import NodeSpec, UpConfig, state_path
from shoal.cli.upstate import (
    MAX_REQUEST,
    is_recorded_process,
    proc_identity,
    read_state,
    remove_state,
    write_state,
)

__all__ = ["MAX_CLIENTS", "run_up"]

MAX_CLIENTS = 8
"""Control connections served at once; more wait for the listener's backlog."""
_MAX_LINE = 1 << 20  # a node's output line longer than this is cut
_PUMP_GRACE = 5.0  # seconds a node's output may outlast its process
_CANNOT_START = 127  # the exit status reported for a node whose process could not start
_READ_TIMEOUT = 5.0  # seconds a control client has to send its request line


class _Runner:
    """One node: its current process and what happened to it."""

    def __init__(self, spec: NodeSpec, policy_window: float) -> None:
        self.spec = spec
        self.process: asyncio.subprocess.Process | None = None
        # Invariant: one of new, starting, running, backoff, stopping, stopped, gave-up.
        self.state = "new"
        self.starts = 0
        self.restarts = 0
        self.last_exit: int | None = None
        # Start times of recent restarts, pruned to the policy's window.
        self.recent: collections.deque[float] = collections.deque()
        self.window = policy_window
        self.delays: Iterator[float] | None = None
        self.restart_asked = False
        self.wake = asyncio.Event()

    def as_dict(self) -> dict[str, Any]:
        return {"os_pid": self.process.pid if self.process and self.state in (
                    "starting", "running", "stopping") else None,
                "state": self.state, "starts": self.starts, "restarts": self.restarts,
                "last_exit": self.last_exit}


class _Up:
    def __init__(self, config: UpConfig) -> None:
        self.config = config
        self.policy = config.restart
        self.path = state_path(config)
        self.runners = {spec.name: _Runner(spec, self.policy.window_s)
                        for spec in config.nodes}
        self.stopping = asyncio.Event()
        self.changed = asyncio.Condition()
        self.token = secrets.token_hex(16)
        self.port = 0
        self.width = max(len("up"), *(len(name) for name in self.runners))
        identity = proc_identity(os.getpid())
        self.cmdline, self.started = identity if identity else ([], "")
        self.clients = asyncio.Semaphore(MAX_CLIENTS)

    # -- output and state ------------------------------------------------------------

    def say(self, source: str, text: str) -> None:
        try:
            sys.stdout.write(f"{source.ljust(self.width)} | {text}\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass  # nobody reads our terminal any more; the nodes go on

    async def _changed(self) -> None:
        write_state(self.path, {
            "file": str(self.config.path), "cluster": self.config.cluster,
            "store": self.config.store, "up_pid": os.getpid(), "cmdline": self.cmdline,
            "up_start": self.started, "stop_timeout_s": self.policy.stop_timeout_s,
            "control": {"host": "127.0.0.1", "port": self.port, "token": self.token},
            "nodes": {name: r.as_dict() for name, r in self.runners.items()}})
        async with self.changed:
            self.changed.notify_all()

    # -- one node --------------------------------------------------------------------

    async def _start(self, runner: _Runner) -> asyncio.subprocess.Process:
        env = {**os.environ, **runner.spec.env, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *self.config.command(runner.spec, sys.executable), cwd=self.config.directory,
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, limit=_MAX_LINE)
        runner.process, runner.state = process, "starting"
        runner.starts += 1
        self.say("up", f"started node {runner.spec.name} (os pid {process.pid})")
        await self._changed()
        return process

    async def _pump(self, runner: _Runner, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        name = runner.spec.name
        ready = f"shoal node {name} ready on "
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # longer than _MAX_LINE: print what is there, go on
                line = await process.stdout.read(_MAX_LINE)
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            self.say(name, text)
            if text.startswith(ready) and runner.process is process:
                runner.state = "running"
                await self._changed()

    async def _keep(self, runner: _Runner) -> None:
        """Run one node until shoal up stops (the module header's rules)."""
        name = runner.spec.name
        while not self.stopping.is_set():
            if runner.state in ("stopped", "gave-up") and not runner.restart_asked:
                runner.wake.clear()
                await _first(runner.wake.wait(), self.stopping.wait())
                continue
            runner.restart_asked = False
            try:
                process = await self._start(runner)
            except OSError as exc:  # the interpreter or the file's directory is gone
                self.say("up", f"cannot start node {name}: {exc}")
                await self._back_off(runner, _CANNOT_START)
                continue
            if self.stopping.is_set():
                await self._stop_node(runner)  # started while the stop began: stop it too
            pump = asyncio.create_task(self._pump(runner, process))
            code = await process.wait()
            # Its output ends with it, unless a process it started holds
            # the pipe: then that one's lines are not shown, and we go on.
            await asyncio.wait([pump], timeout=_PUMP_GRACE)
            pump.cancel()
            runner.last_exit = code
            if self.stopping.is_set():
                break
            if runner.restart_asked:
                self.say("up", f"node {name} exited {_status(code)}; starting it again "
                               "(control restart)")
                continue
            if code == 0:
                runner.state = "stopped"
                self.say("up", f"node {name} exited 0 (drained or stopped on purpose); not "
                               "restarted (shoal deploy, or a control restart, starts it)")
                await self._changed()
                continue
            await self._back_off(runner, code)

    async def _back_off(self, runner: _Runner, code: int) -> None:
        name, now = runner.spec.name, time.monotonic()
        while runner.recent and runner.recent[0] < now - self.policy.window_s:
            runner.recent.popleft()
        if not runner.recent:
            runner.delays = None  # quiet for a window: start again from the first delay
        if len(runner.recent) >= self.policy.max_restarts:
            runner.state = "gave-up"
            self.say("up", f"node {name} exited {_status(code)}; {len(runner.recent)} "
                           f"restarts within {self.policy.window_s:g}s: giving up on it "
                           "(a control restart starts it again)")
            await self._changed()
            return
        if runner.delays is None:
            runner.delays = backoff_delays(initial=self.policy.backoff_initial_s,
                                           maximum=self.policy.backoff_max_s)
        delay = next(runner.delays)
        runner.recent.append(now)
        runner.restarts += 1
        runner.state = "backoff"
        self.say("up", f"node {name} exited {_status(code)}; restarting it in {delay:.2f}s "
                       f"(restart {len(runner.recent)} of at most "
                       f"{self.policy.max_restarts} within {self.policy.window_s:g}s)")
        await self._changed()
        runner.wake.clear()
        # The backoff delay; a stop or a control restart ends it early.
        await _first(runner.wake.wait(), self.stopping.wait(), timeout=delay)

    async def _stop_node(self, runner: _Runner, *, drained: bool = False) -> None:
        """SIGTERM, then SIGKILL after the stop timeout. A ``drained`` node is
        exiting by itself already: it is given the time, not the signal."""
        process = runner.process
        if process is None or process.returncode is not None:
            return
        runner.state = "stopping"
        if not drained:
            _signal(process, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.policy.stop_timeout_s)
        except TimeoutError:
            self.say("up", f"node {runner.spec.name} still running "
                           f"{self.policy.stop_timeout_s:g}s after "
                           f"{'its drain' if drained else 'SIGTERM'}: SIGKILL")
            _signal(process, signal.SIGKILL)
            await process.wait()

    # -- control ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self.clients:
            try:
                # A silent client is not waited for: it would hold a slot.
                line = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT)
                answer = await self._answer(line)
            except (ValueError, TypeError, ConnectionError, TimeoutError) as exc:
                answer = {"ok": False, "error": f"bad control request: {exc}"}
            try:
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
            except ConnectionError:
                pass  # the asker went away
            finally:
                writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        request = json.loads(line) if len(line) <= MAX_REQUEST else None
        if not isinstance(request, dict) or not secrets.compare_digest(
                str(request.get("token", "")).encode(), self.token.encode()):
            return {"ok": False, "error": "refused: not a control request with this "
                                          "shoal up's token"}
        op = request.get("op")
        if op == "status":
            return {"ok": True, "nodes": {n: r.as_dict() for n, r in self.runners.items()}}
        if op != "restart":
            return {"ok": False, "error": f"unknown control op {op!r} (status, restart)"}
        runner = self.runners.get(str(request.get("node")))
        if runner is None:
            return {"ok": False, "error": f"no node {request.get('node')!r} in "
                                          f"{self.config.path.name}"}
        timeout = request.get("timeout", 30)
        if type(timeout) not in (int, float) or not 0 < timeout <= 3600:
            return {"ok": False, "error": "timeout: a number of seconds in (0, 3600]"}
        return await self._restart(runner, float(timeout),
                                   drained=request.get("drained") is True)

    async def _restart(self, runner: _Runner, timeout: float, *, drained: bool
                       ) -> dict[str, Any]:
        if self.stopping.is_set():
            return {"ok": False, "error": "shoal up is stopping"}
        name, before = runner.spec.name, runner.starts
        self.say("up", f"restarting node {name} (control request)")
        runner.restart_asked = True
        runner.recent.clear()  # asked for: a fresh count of restarts
        runner.wake.set()
        await self._stop_node(runner, drained=drained)

        def settled() -> bool:
            return (runner.starts > before and runner.state != "starting") \
                or self.stopping.is_set()
        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(settled), timeout)
        except TimeoutError:
            return {"ok": False, "error": f"node {name} not ready {timeout:g}s after its "
                                          "restart"}
        if runner.state != "running":
            return {"ok": False, "error": f"node {name} did not start: {runner.state}, last "
                                          f"exit {_status(runner.last_exit)}"}
        return {"ok": True, "node": name, **runner.as_dict()}

    # -- the whole ------------------------------------------------------------------

    async def run(self) -> int:
        running = read_state(self.path)
        if running is not None and is_recorded_process(running):
            # This file's, or another file's of the same cluster name in this
            # directory (same state file, same store): one at a time.
            raise ShoalError(f"a shoal up of {running.get('file')} already runs cluster "
                             f"{self.config.cluster!r} here (pid {running.get('up_pid')}; "
                             f"state {self.path})")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_REQUEST * 2)
        self.port = server.sockets[0].getsockname()[1]
        await self._changed()
        self.say("up", f"cluster {self.config.cluster!r} of {self.config.path.name}: "
                       f"{len(self.runners)} node(s), store {self.config.store}; "
                       f"state {self.path}")
        keepers = [asyncio.create_task(self._keep(r)) for r in self.runners.values()]
        try:
            await self.stopping.wait()
            self.say("up", "stopping every node (SIGTERM, then SIGKILL after "
                           f"{self.policy.stop_timeout_s:g}s)")
            server.close()
            await asyncio.gather(*(self._stop_node(r) for r in self.runners.values()))
            await asyncio.gather(*keepers)
        finally:
            for keeper in keepers:
                keeper.cancel()
            for runner in self.runners.values():
                if runner.process is not None and runner.process.returncode is None:
                    _signal(runner.process, signal.SIGKILL)
            remove_state(self.path, os.getpid())
        codes = {name: r.last_exit for name, r in self.runners.items()}
        self.say("up", "stopped: " + ", ".join(f"{n} {_status(c)}" for n, c in codes.items()))
        return 0


async def run_up(config: UpConfig) -> int:
    """Run ``config``'s cluster until SIGTERM or SIGINT; 0 once every node stopped."""
    return await _Up(config).run()


async def _first(*waits: Any, timeout: float | None = None) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _signal(process: asyncio.subprocess.Process, sig: int) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it exited, reaped meanwhile
            os.kill(process.pid, sig)


def _status(code: int | None) -> str:
    if code is None:
        return "(not run)"
    if code < 0:
        try:
            return f"by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"by signal {-code}"
    return f"with status {code}"
