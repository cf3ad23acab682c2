"""What the language clients' tests share (test_java.py, test_php.py,
test_go.py, test_node.py, test_mixed_members.py): finding a toolchain,
running a client's program, reading a README's example, the conformance
check of a client's JSON mapping,
and a steady Python caller.

Rules:

- A missing toolchain fails the test and says how to install it; nothing is
  skipped (``scripts/ensure-languages.sh`` installs them in CI).
- Every child process is started here and stopped here, by its own pid
  (``Program`` kills it when the test leaves its ``async with``), and every
  wait on one is bounded.
- The event loop stays free: the test's Python caller runs on it, so child
  processes are driven with asyncio's subprocess API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import shoal
from shoal.gateway.jsonmap import from_json, to_json
from shoal.pid import Crash, Pid
from shoal.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "pure" / "vectors" / "gateway_vectors.json"


# What the Go and Node.js drivers' "tour" prints: the same checks, line for
# line (the Java and PHP drivers print theirs without the caller's deadline).
TOUR_WITH_DEADLINE = [
    "members 2 2", 'callPid "hi" ok', "cast true ok", "castPid ok", "send ok",
    "dead noproc true 404",  # a pid that is not alive
    "empty no_members true 404",  # a group with no member
    "slow timeout false 504",  # the gateway enforces the call's timeout (0.5 s here)
    "tiny timeout false 504",  # a timeout under a millisecond is sent as one
    "deadline timeout false",  # the caller's own deadline (0.5 s) bounds the wait
]


def need(tool: str) -> str:
    """The path of ``tool``; a clear failure when it is not installed."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run scripts/ensure-languages.sh "
                    f"(PHP 8, a JDK 11+, Go, Node.js from Debian's packages)")
    return path


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port`` now."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def run(args: Sequence[str], *, env: dict[str, str] | None = None,
              stdin: str | None = None, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run a program to its end: its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(None if stdin is None else stdin.encode()), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Program:
    """A long-running child (a member, a callback server), read line by line.

    ``async with Program(...) as p``: started on entry, killed (by its pid)
    and reaped on exit if it is still running.
    """

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None,
                 output: Path | None = None, own_group: bool = False) -> None:
        self.args = list(args)
        self.env = env
        # A program that forks workers (php -S with PHP_CLI_SERVER_WORKERS)
        # runs in a process group of its own, whose id is its pid: stopping
        # it stops the workers too, which would otherwise outlive it.
        self.own_group = own_group
        # A chatty program (php -S logs every request) writes to a file, not
        # a pipe nobody reads (which would fill up and stall it).
        self.output = output
        self.proc: asyncio.subprocess.Process | None = None
        self.seen: list[str] = []

    async def __aenter__(self) -> Program:
        with contextlib.ExitStack() as files:
            out: Any = asyncio.subprocess.PIPE
            if self.output is not None:
                out = files.enter_context(self.output.open("wb"))
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, cwd=ROOT, env=self.env, stdin=asyncio.subprocess.PIPE,
                stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=self.own_group)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.own_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group this program leads
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10.0)

    def group_alive(self) -> bool:
        """Whether any process of its own process group is left."""
        assert self.proc is not None and self.own_group
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def line(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The next output line matching ``pattern`` (a regex searched in it)."""
        assert self.proc is not None and self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no line matching {pattern!r} from {self.args[:3]} within "
                                   f"{timeout} s; it printed: {self.seen[-20:]}")
            raw = await asyncio.wait_for(self.proc.stdout.readline(), left)
            if not raw:
                code = await asyncio.wait_for(self.proc.wait(), 10.0)
                raise AssertionError(f"{self.args[:3]} exited ({code}) before printing "
                                     f"{pattern!r}; it printed: {self.seen[-20:]}")
            text = raw.decode().rstrip("\n")
            self.seen.append(text)
            found = re.search(pattern, text)
            if found:
                return found

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def kill_and_reap(self) -> None:
        """kill -9, and wait until the process is gone."""
        self.signal(signal.SIGKILL)
        await self.exit_code()

    async def exit_code(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def rest(self, timeout: float = 20.0) -> list[str]:
        """Every line it prints until it exits."""
        assert self.proc is not None and self.proc.stdout is not None
        out = await asyncio.wait_for(self.proc.stdout.read(), timeout)
        self.seen.extend(out.decode().splitlines())
        return self.seen


async def post_without_token(url: str) -> int:
    """The status a member's callback answers to a POST without the
    registration's token (anyone but the gateway)."""
    async with aiohttp.ClientSession() as session, \
            session.post(url, json="anything", headers={"Shoal-Kind": "call"}) as answer:
        return answer.status


def readme_example(readme: Path, heading: str, language: str) -> str:
    """The first ```language block after the line ``heading`` in a README:
    the examples are run exactly as written."""
    text = readme.read_text()
    start = text.index(heading)
    found = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert found is not None, f"no ```{language} block after {heading!r} in {readme}"
    return found.group(1)


def other_languages_example(heading: str, language: str) -> str:
    """The ```language block under ``### heading`` in the project README's
    "Other languages" section."""
    section = (ROOT / "README.md").read_text().split("## Other languages", 1)[1]
    part = section.split("\n## ", 1)[0].split(f"### {heading}\n", 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", part, re.S)
    assert found is not None, f"no ```{language} block under ### {heading} in README.md"
    return found.group(1)


# ---- the JSON mapping, as Python does it (the reference) --------------------

def tag(term: Any) -> Any:
    """A term with its type made explicit, so no two languages' ``1`` and
    ``1.0``, ``"ab"`` and ``b"ab"`` compare equal by accident."""
    if term is None:
        return ["null"]
    if isinstance(term, bool):
        return ["bool", term]
    if isinstance(term, int):
        return ["int", term]
    if isinstance(term, float):
        return ["float", term]
    if isinstance(term, str):
        return ["str", term]
    if isinstance(term, bytes):
        return ["bin", term.hex()]
    if isinstance(term, Pid):
        return ["pid", term.node, term.creation, term.serial]
    if isinstance(term, Crash):
        return ["crash", term.type, term.message, term.traceback]
    if isinstance(term, list):
        return ["list", [tag(item) for item in term]]
    assert isinstance(term, dict), term
    return ["map", [[tag(key), tag(value)] for key, value in term.items()]]


# Documents beyond the shared vectors: the corners where a language's own
# JSON types differ from the mapping's (PHP arrays, Java's numbers).
EXTRA_CASES: list[Any] = [
    {}, [], {"0": "a", "1": "b"}, {"1": "x"}, 1.0, -0.5, 2**53, 2**62, "é😀\t\"\\",
    {"a": {"$map": {"$x": {"$bin": ""}}}}, {"$kv": [[{"$bin": "00"}, {"$pid": ["n.1", 0, 0]}]]},
    {"$kv": [[1, 2]]}, {"$kv": [["a"]]}, {"$bin": "0g"}, {"$bin": "abc"}, {"$pid": ["n", "1", 2]},
    {"$pid": ["n", 1]}, {"$crash": ["t", "m", 3]}, {"$map": []}, {"$pid": [1, 2, 3], "x": 1},
    [[[[[[[[[[{"deep": True}]]]]]]]]]], {"$nope": None},
    {"$crash": ["builtins.ValueError", "boom", "Traceback (most recent call last):\n"]},
]


def mapping_documents() -> list[str]:
    """JSON documents, one a line: the gateway's conformance vectors (valid
    and invalid) and EXTRA_CASES."""
    vectors = json.loads(VECTORS.read_text())
    docs = [json.dumps(entry["json"], ensure_ascii=False) for entry in vectors["mapping"]]
    docs += [" ".join(entry["body"].splitlines()) for entry in vectors["invalid_json"]]
    docs += [json.dumps(doc, ensure_ascii=False) for doc in EXTRA_CASES]
    return docs


def error_answers() -> list[tuple[str, str]]:
    """The error answers of the vectors, as "STATUS<tab>BODY" input lines
    and what a client must make of each: "kind retrySafe remoteType status member"."""
    out = []
    for entry in json.loads(VECTORS.read_text())["errors"]:
        error = entry["example"]["error"]
        member = error.get("member")
        expected = " ".join([
            error["kind"], "true" if error["retry_safe"] else "false",
            error.get("remote_type") or "null", str(entry["status"]),
            str(from_json(member)) if member else "null"])
        out.append((f"{entry['status']}\t{json.dumps(entry['example'])}", expected))
    return out


def expected_mapping(document: str) -> tuple[str, Any, Any]:
    """("ok", tagged term, JSON form) as Python maps ``document``, or
    ("refused", None, None)."""
    try:
        term = from_json(json.loads(document))
        form = to_json(term)
    except (ValueError, shoal.ShoalError):  # JSONDecodeError is a ValueError
        return "refused", None, None
    return "ok", tag(term), form


def canonical(tagged: Any, *, js_numbers: bool = False) -> Any:
    """A tagged term (``tag``) in one canonical form: a map's entries sorted
    (a map has no order, and Go's maps keep none); with ``js_numbers``, every
    number as the double it is in JavaScript (which cannot tell ``2.0`` from
    ``2``, nor hold an integer beyond 2**53 exactly: docs/gateway.md section 2)."""
    kind = tagged[0]
    if js_numbers and kind in ("int", "float"):
        return ["number", float(tagged[1])]
    if kind == "list":
        return ["list", [canonical(item, js_numbers=js_numbers) for item in tagged[1]]]
    if kind == "map":
        entries = [[canonical(part, js_numbers=js_numbers) for part in entry]
                   for entry in tagged[1]]
        return ["map", sorted(entries, key=json.dumps)]
    return tagged


def check_mapping(documents: list[str], output: str, *, js_numbers: bool = False) -> list[str]:
    """Compare a client's ``mapping`` output with Python's mapping, terms in
    ``canonical`` form; the differences, one line each (empty when the
    client conforms)."""
    lines = output.splitlines()
    assert len(lines) == len(documents), (len(lines), len(documents), output[-500:])

    def same(a: Any, b: Any) -> bool:
        return bool(canonical(a, js_numbers=js_numbers) == canonical(b, js_numbers=js_numbers))

    wrong = []
    for document, line in zip(documents, lines, strict=True):
        verdict, tagged, form = expected_mapping(document)
        parts = line.split("\t")
        if parts[0] != verdict:
            wrong.append(f"{document}: Python says {verdict}, the client says {line}")
        elif verdict == "ok":
            if not same(json.loads(parts[1]), tagged):
                wrong.append(f"{document}: decoded as {parts[1]}, Python: {json.dumps(tagged)}")
            if not same(tag(from_json(json.loads(parts[2]))), tag(from_json(form))):
                wrong.append(f"{document}: encoded back as {parts[2]}, Python: {json.dumps(form)}")
    return wrong


# ---- a steady Python caller -------------------------------------------------

class SteadyCaller:
    """Calls a group from the test's Python node, one call after another,
    until stopped; keeps every failure and who answered.

    ``after_reply(reply)`` runs after each reply, before the next call (a
    test kills a member there, so that no call of this caller is in flight).
    """

    def __init__(self, node: shoal.Node, group: str, *, strategy: str = "round_robin",
                 request: Callable[[int], Any] = lambda n: n, pause: float = 0.005) -> None:
        self.node = node
        self.group = group
        self.strategy = strategy
        self.request = request
        self.pause = pause
        self.replies: list[Any] = []
        self.failures: list[BaseException] = []
        self.after_reply: Callable[[Any], Any] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> SteadyCaller:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                reply = await self.node.groups.call(self.group, self.request(n), timeout=5.0,
                                                    strategy=self.strategy)
            except shoal.ShoalError as exc:
                self.failures.append(exc)
            else:
                self.replies.append(reply)
                if self.after_reply is not None:
                    done = self.after_reply(reply)
                    if asyncio.iscoroutine(done):
                        await done
            # Pacing, so a steady caller leaves the shared CPU to the members.
            await asyncio.sleep(self.pause)

    def count(self, who: str) -> int:
        """Replies from a client's member (they answer ``[who, request]``)."""
        return sum(1 for r in self.replies if isinstance(r, list) and r[:1] == [who])

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 15.0)



async def kill_member_between_calls(node: shoal.Node, group: str, proxy: Pid,
                                    member: Program, who: str) -> SteadyCaller:
    """The kill -9 test every client shares: a steady Python caller calls
    ``group``; right after ``who``'s member (run by ``member``, its proxy
    ``proxy``) has answered it three times, the member's OS process is
    killed with SIGKILL, before the caller's next call. Returns the caller,
    stopped, once the proxy has left the group and twenty more calls were
    answered: the test asserts it saw no failure.

    Why none is expected: the kill comes after the member answered the only
    caller, so no call is in flight there. The next call routed to it finds
    the callback refusing connections; the proxy exits, and the call fails
    as not started (``noproc``), which a group call retries on another
    member (G3). The proxy leaves the group in its exit path (G1). A call in
    flight at the kill would have unknown delivery, retried only if
    idempotent: not what this relies on.
    """
    await wait_until(lambda: proxy in node.groups.get_members(group), timeout=10.0,
                     what=f"the {who} member in the group")
    caller = SteadyCaller(node, group).start()
    try:
        await wait_until(lambda: caller.count(who) >= 3, timeout=15.0,
                         what=f"three replies from the {who} member")

        async def kill_after_its_reply(reply: Any) -> None:
            if isinstance(reply, list) and reply[:1] == [who] and caller.after_reply:
                caller.after_reply = None
                await member.kill_and_reap()

        caller.after_reply = kill_after_its_reply
        await wait_until(lambda: member.proc is not None and member.proc.returncode is not None,
                         timeout=15.0, what=f"the {who} member killed")
        await wait_until(lambda: proxy not in node.groups.get_members(group), timeout=10.0,
                         what="the killed member out of the group")
        after = len(caller.replies)
        await wait_until(lambda: len(caller.replies) >= after + 20, timeout=15.0,
                         what="twenty more calls")
    finally:
        await caller.stop()
    assert member.proc is not None and member.proc.returncode == -signal.SIGKILL
    return caller


async def sigterm_drains_calls_in_flight(node: shoal.Node, group: str, member: Program,
                                         who: str) -> None:
    """The SIGTERM test of a client whose member driver prints ``registered
    ID PID``, ``call ...`` per call received and ``drained N`` when closed:
    three slow calls in flight at SIGTERM all get their replies, the close
    reports the three, the program exits 0 and its proxy leaves the group."""
    proxy = Pid.parse((await member.line(r"^registered (\S+) (\S+)$")).group(2))
    await wait_until(lambda: proxy in node.groups.get_members(group), timeout=10.0,
                     what=f"the {who} member in the group")
    requests = [{"sleep": 1.0, "n": n} for n in range(3)]
    calls = [asyncio.ensure_future(node.groups.call(group, request, timeout=10.0))
             for request in requests]
    for _ in requests:
        await member.line(r"^call ")
    member.signal(signal.SIGTERM)
    drained = int((await member.line(r"^drained (\d+)$")).group(1))
    replies = await asyncio.wait_for(asyncio.gather(*calls), 15.0)
    assert await member.exit_code() == 0
    assert replies == [[who, request] for request in requests]
    assert drained == len(requests)
    await wait_until(lambda: proxy not in node.groups.get_members(group), timeout=10.0,
                     what="the closed member out of the group")


async def readme_doubler_serves_and_leaves(node: shoal.Node, member: Program,
                                           who: str) -> None:
    """The README member of the Go and Node.js clients (group ``doubler``,
    printing ``serving as PID``): it doubles an integer, rejects anything
    else, exits 0 on SIGTERM, and its proxy leaves the group."""
    pid = Pid.parse((await member.line(r"^serving as (\S+)$")).group(1))
    await wait_until(lambda: pid in node.groups.get_members("doubler"), timeout=10.0,
                     what=f"the {who} member in the group")
    assert await node.groups.call("doubler", 21) == 42
    with pytest.raises(shoal.ShoalError, match="not an integer"):
        await node.groups.call("doubler", "x")
    member.signal(signal.SIGTERM)
    assert await member.exit_code() == 0
    # The leave reaches this node's view of the group through the cluster.
    await wait_until(lambda: pid not in node.groups.get_members("doubler"), timeout=10.0,
                     what="the stopped member out of the group")
