"""Java and PHP members with callers in other languages, on the 2-node
cluster of ``gateway_cluster``: a Python caller, a Java member and a PHP
member in one group (``least_loaded`` spreads the calls by the members'
calls in flight; stopping the Java service drains its calls before it
leaves, with no failed call), and each client calling the other's member."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from client_support import Program, SteadyCaller, run
from test_java import classes, java  # noqa: F401 (classes is a fixture)
from test_php import CHECK, php, php_member

from shoal.pid import Pid
from shoal.testing import wait_until

GROUP = "mixed"


async def test_least_loaded_spreads_by_calls_in_flight_and_a_java_stop_drains_first(
        classes: Path, tmp_path: Path, gateway_cluster: Any) -> None:  # noqa: F811
    node = gateway_cluster.python_caller()
    env = gateway_cluster.env()
    async with Program(java(classes, "ClientCheck", "member", "default", GROUP, "4"),
                       env=env) as java_member, \
            php_member(tmp_path, env, GROUP, concurrency=4, workers=4) as (server, keeper, php_pid):
        java_pid = Pid.parse((await java_member.line(r"^registered (\S+) (\S+) (\S+)$")).group(2))
        await wait_until(lambda: {java_pid, php_pid} <= set(node.groups.get_members(GROUP)),
                         timeout=10.0, what="both members in the group")

        # Every call asks the Java member to take half a second; the PHP
        # member (the README's callback) answers at once. least_loaded draws
        # two members at random and takes the one with fewer calls in flight
        # (this node's, plus the queue length the member last reported): the
        # busy Java member wins only when it is drawn twice (1/4 of the picks
        # with two members) or is not the busier one, where random or
        # round_robin would give it half of them.
        callers = [SteadyCaller(node, GROUP, strategy="least_loaded", pause=0.0,
                                request=lambda n: {"sleep": 0.5, "n": n}).start()
                   for _ in range(6)]
        try:
            await wait_until(lambda: sum(c.count("php") for c in callers) >= 150
                             and sum(c.count("java") for c in callers) >= 10,
                             timeout=30.0, what="calls answered by both members")
            to_java = sum(c.count("java") for c in callers)
            to_php = sum(c.count("php") for c in callers)
            assert to_java < 0.4 * (to_java + to_php), (to_java, to_php)

            # A call the Java member holds for a second when it is told to stop.
            held = asyncio.get_running_loop().create_task(
                node.call(java_pid, {"sleep": 1.0, "held": True}, timeout=10.0))
            await java_member.line(r"^handling .*held")
            java_member.signal(signal.SIGTERM)
            drained = int((await java_member.line(r"^drained (\d+)$")).group(1))
            assert await held == ["java", {"sleep": 1.0, "held": True}]
            assert drained >= 1
            assert await java_member.exit_code() == 128 + signal.SIGTERM
            await wait_until(lambda: java_pid not in node.groups.get_members(GROUP),
                             timeout=10.0, what="the Java member out of the group")
            answered = sum(len(c.replies) for c in callers)
            await wait_until(lambda: sum(len(c.replies) for c in callers) >= answered + 50,
                             timeout=15.0, what="fifty more calls, all to PHP")
        finally:
            for caller in callers:
                await caller.stop()
        assert [f for c in callers for f in c.failures] == []
        keeper.signal(signal.SIGTERM)
        assert (await keeper.line(r"^drained \d+$")) is not None
        assert await keeper.exit_code() == 0
    # php -S forked four workers: none outlives the test.
    await wait_until(lambda: not server.group_alive(), timeout=10.0,
                     what="php -S and its workers gone")


async def test_a_rejection_and_a_crash_in_one_language_reach_a_caller_in_the_other(
        classes: Path, tmp_path: Path, gateway_cluster: Any) -> None:  # noqa: F811
    node = gateway_cluster.python_caller()
    env = gateway_cluster.env()
    async with Program(java(classes, "ClientCheck", "member", "default", "jv", "2"),
                       env=env) as java_member, \
            php_member(tmp_path, env, "ph") as (_, _, php_pid):
        java_pid = Pid.parse((await java_member.line(r"^registered (\S+) (\S+) (\S+)$")).group(2))
        await wait_until(lambda: java_pid in node.groups.get_members("jv")
                         and php_pid in node.groups.get_members("ph"),
                         timeout=10.0, what="both members in their groups")
        sent = {"x": {"$bin": "00ff"}, "who": {"$pid": ["n1", 1, 2]}}
        by_php, by_java = php(CHECK), java(classes, "ClientCheck")
        for caller, group, request, expected in [
            (by_php, "jv", sent, ["reply", ["java", sent]]),
            (by_php, "jv", "reject me", ["error", "rejected false null 422"]),
            (by_php, "jv", "crash me",
             ["error", "crash false java.lang.IllegalStateException 502"]),
            (by_java, "ph", sent, ["reply", ["php", sent]]),
            (by_java, "ph", "bad", ["error", "rejected false null 422"]),
            (by_java, "ph", "boom", ["error", "crash false RuntimeException 502"]),
        ]:
            code, out, err = await run([*caller, "call", "default", group, json.dumps(request)],
                                       env=env)
            assert code == 0, out + err
            kind, _, rest = out.strip().partition(" ")
            got = [kind, json.loads(rest) if kind == "reply" else rest]
            assert got == expected, (group, request)
