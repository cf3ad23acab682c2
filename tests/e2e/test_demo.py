"""``shoal demo`` for real: node processes, faults, the verdict, the plot, Ctrl-C.

Each test runs ``python -m shoal.cli demo`` as a subprocess whose stdout is
a pipe (no terminal: plain lines), the way CI and a user's script see it.
The run is the demo's own (its phases take ~15 s at ``--scale 0.5``), so
the suite runs it once to the end, and until its hang is interrupted once
per signal that stops it (SIGINT, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OS_PID = re.compile(r"OS pid (\d+)")


def _demo(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("SHOAL_TEST_STORE", None)
    return subprocess.Popen([sys.executable, "-m", "shoal.cli", "demo", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that still runs (a zombie, dead and
    waiting to be reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(parent: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it ended while we looked
            if int(fields[1]) == parent:
                found.add(int(entry.name))
    return found


def _store_directory(pid: int) -> Path | None:
    """The directory of the store a node process was started on."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for flag, value in itertools.pairwise(argv):
        if flag == b"--store" and value.startswith(b"sqlite://"):
            return Path(value[len(b"sqlite://"):].decode()).parent
    return None


@pytest.mark.timeout(150)
def test_the_demo_survives_every_fault_and_says_violations_0(tmp_path: Path) -> None:
    picture = tmp_path / "demo.png"
    demo = _demo("--scale", "0.5", "--plot", str(picture))
    out, err = demo.communicate(timeout=120)
    assert demo.returncode == 0, out + err
    lines = out.splitlines()
    assert lines[-1] == "violations: 0"
    # The story, phase by phase, as plain lines (stdout is not a terminal).
    for number, name in enumerate(("warm-up", "kill -9 n1", "hang n2", "crash workers",
                                   "rolling deploy", "reap"), start=1):
        assert any(f"== phase {number}/6: {name}" in line for line in lines), name
    assert "\x1b" not in out
    figures = [line for line in lines if " calls/s " in line]
    assert len(figures) >= 10  # about one a second
    assert any("n2 0/4" in line for line in figures)  # the hung node, seen unroutable
    report = "\n".join(lines[lines.index(next(x for x in lines if x.startswith("== report"))):])
    assert " 0 failed" in report
    assert re.search(r"time to exclude  n1 \(kill -9\) \d\.\d{3} s; n2 \(hung by SIGSTOP\) "
                     r"\d\.\d{3} s", report)
    assert "reap found       nothing to reap" in report
    assert "unknown delivery 0: the calls are marked idempotent" in report
    # What an operator's dashboard would show is what the demo reports: the
    # callers' node's /metrics, read over HTTP at the end, counted the same calls.
    url = re.search(r"serves its metrics at (http://127\.0\.0\.1:\d+/metrics)", out)
    assert url is not None, out
    assert f"metrics          {url.group(1)} counted the same group calls" in report
    # --plot: a PNG of a sane size.
    data = picture.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert 10_000 < len(data) < 400_000
    assert struct.unpack(">II", data[16:24]) == (1000, 700)
    # Every node process it started (restarts included) is gone.
    pids = {int(p) for p in OS_PID.findall(out)}
    assert len(pids) >= 3 + 1 + 3  # three nodes, a restart, a rolling deploy
    assert not [pid for pid in pids if _running(pid)]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["ctrl-c", "sigterm", "terminal-closed"])
def test_interrupted_during_the_hang_it_leaves_no_node_process_behind(sig: int) -> None:
    demo = _demo("--scale", "0.5")
    assert demo.stdout is not None
    printed: set[int] = set()
    seen: list[str] = []
    deadline = time.monotonic() + 90
    for line in demo.stdout:  # bounded: the demo ends, or the deadline fails the test
        seen.append(line)
        printed |= {int(p) for p in OS_PID.findall(line)}
        if "== phase 3/6: hang n2" in line or time.monotonic() > deadline:
            break
    assert any("phase 3/6" in line for line in seen), "".join(seen)
    started = printed | _children(demo.pid)  # also any it had not printed yet
    stores = {_store_directory(pid) for pid in started} - {None}
    assert len(stores) == 1, stores  # its one temporary embedded store
    demo.send_signal(sig)  # one node is SIGSTOPped right now
    _, err = demo.communicate(timeout=60)
    assert demo.returncode == 130, err
    assert "interrupted: every node process the demo started has stopped" in err
    assert "Traceback" not in err
    assert len(printed) >= 4  # three nodes and the restarted one
    assert not [pid for pid in started if _running(pid)]
    assert not [store for store in stores if store is not None and store.exists()]


@pytest.mark.timeout(90)
def test_an_http_address_in_use_is_a_one_line_error_and_exit_1() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = _demo("--scale", "0.25", "--http", f"127.0.0.1:{port}")
        out, err = demo.communicate(timeout=60)
    assert demo.returncode == 1, out + err
    assert "shoal demo: could not start: " in err and f"--http 127.0.0.1:{port} free?" in err
    assert "Traceback" not in err
