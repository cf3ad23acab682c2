"""The Node.js client (clients/node/) against a real 2-node cluster (``gateway_cluster``).

No build step and no npm: the client's own unit tests (``node --test``: the
mapping against the gateway's vectors, the client and the member against a
fake gateway), its test program ``clients/node/internal/driver.js``, and the
README's two modules, run as written from a temporary directory where
``node_modules/@shoal/gateway`` is this checkout's client.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from client_support import (
    ROOT,
    TOUR_WITH_DEADLINE,
    Program,
    check_mapping,
    error_answers,
    kill_member_between_calls,
    mapping_documents,
    need,
    readme_doubler_serves_and_leaves,
    readme_example,
    run,
    sigterm_drains_calls_in_flight,
)

from shoal.pid import Pid

CLIENT = ROOT / "clients" / "node"
README = CLIENT / "README.md"
DRIVER = CLIENT / "internal" / "driver.js"


def node_cmd(*args: str) -> list[str]:
    return [need("node"), *args]


def readme_module(tmp: Path, heading: str) -> Path:
    """A module of the README, as written, beside a node_modules where
    ``@shoal/gateway`` is the client of this checkout."""
    scope = tmp / "node_modules" / "@shoal"
    scope.mkdir(parents=True)
    (scope / "gateway").symlink_to(CLIENT, target_is_directory=True)
    module = tmp / "example.mjs"
    module.write_text(readme_example(README, heading, "js"))
    return module


def test_the_node_clients_own_tests_pass() -> None:
    done = subprocess.run(node_cmd("--test", "test/"), cwd=CLIENT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout


def test_the_node_typings_name_every_export() -> None:
    """index.d.ts is written by hand: it must declare what src/index.js exports."""
    done = subprocess.run(node_cmd("--input-type=module", "-e",
                                   "const m = await import('./src/index.js');"
                                   "console.log(JSON.stringify(Object.keys(m).sort()))"),
                          cwd=CLIENT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    typings = (CLIENT / "index.d.ts").read_text()
    missing = [name for name in json.loads(done.stdout)
               if f"export class {name} " not in typings and f"export const {name}:" not in typings
               and f"export function {name}(" not in typings]
    assert missing == []


async def test_the_node_mapping_reads_and_writes_every_document_as_the_gateway_does() -> None:
    documents = mapping_documents()
    code, out, err = await run(node_cmd(str(DRIVER), "mapping"),
                               stdin="\n".join(documents) + "\n")
    assert code == 0, err
    assert check_mapping(documents, out, js_numbers=True) == []


async def test_node_reads_every_error_answer_of_the_vectors_as_kind_and_retry_safe() -> None:
    answers = error_answers()
    code, out, err = await run(node_cmd(str(DRIVER), "errors"),
                               stdin="\n".join(line for line, _ in answers) + "\n")
    assert code == 0, out + err
    assert out.splitlines() == [expected for _, expected in answers]


async def test_a_node_call_through_either_node_gets_the_groups_reply(
        gateway_cluster: Any) -> None:
    sent = {"n": 1, "blob": {"$bin": "00ff"}, "who": {"$pid": ["n1", 1, 2]}, "f": 1.5,
            "odd": {"$map": {"$x": [None, True]}}}
    for url in gateway_cluster.urls:
        code, out, err = await run(node_cmd(str(DRIVER), "call", "default", "echo",
                                            json.dumps(sent)), env=gateway_cluster.env(url))
        assert code == 0, err
        kind, body = out.strip().split(" ", 1)
        assert kind == "reply", out
        assert json.loads(body) == sent


async def test_node_members_call_pid_cast_send_and_the_errors_of_dead_pid_empty_group_timeout(
        gateway_cluster: Any) -> None:
    code, out, err = await run(node_cmd(str(DRIVER), "tour"), env=gateway_cluster.env())
    assert code == 0, out + err
    assert out.splitlines() == TOUR_WITH_DEADLINE


async def test_a_handler_crash_reaches_node_as_kind_crash_not_retry_safe(
        gateway_cluster: Any) -> None:
    code, out, err = await run(node_cmd(str(DRIVER), "call", "default", "crash", '"x"'),
                               env=gateway_cluster.env())
    assert code == 0, err
    assert out.split() == ["error", "crash", "false", "builtins.ValueError", "502"]


async def test_a_wrong_token_is_unauthorized_for_node(gateway_cluster: Any) -> None:
    env = gateway_cluster.env()
    env["SHOAL_GATEWAY_TOKEN"] = "not-the-token"
    code, out, err = await run(node_cmd(str(DRIVER), "call", "default", "echo", "1"), env=env)
    assert code == 0, err
    assert out.split() == ["error", "unauthorized", "true", "null", "401"]


async def test_the_node_readme_example_runs_as_written_and_is_the_one_in_the_main_readme(
        tmp_path: Path, gateway_cluster: Any) -> None:
    module = readme_module(tmp_path, "## Example")
    assert module.read_text() == readme_example(ROOT / "README.md", "### Node.js", "js")
    code, out, err = await run(node_cmd(str(module)), env=gateway_cluster.env())
    assert code == 0, err
    assert out.splitlines() == ["{ hello: 'world' }", "crash false builtins.ValueError"]


async def test_the_node_readme_member_serves_the_group_and_drains_on_sigterm(
        tmp_path: Path, gateway_cluster: Any) -> None:
    module = readme_module(tmp_path, "## Serving as a group member")
    node = gateway_cluster.python_caller()
    async with Program(node_cmd(str(module)), env=gateway_cluster.env()) as member:
        await readme_doubler_serves_and_leaves(node, member, "Node")


async def test_a_node_member_gets_calls_and_leaves_the_group_when_killed_with_no_failed_call(
        gateway_cluster: Any) -> None:
    """The Node member joins ``echo`` beside a Python member on each node; a
    steady Python caller (round_robin, not idempotent) reaches it; kill -9 of
    the Node process takes it out of the group and no call fails.

    Why none fails (the retry rule): the kill comes right after the Node
    member answered, from the only caller, so no call is in flight in the
    process. A call routed to the member afterwards finds its callback
    refusing connections: the proxy exits and the call fails as not started
    (``noproc``), which a group call retries on another member (G3); and the
    closed registration stream makes the proxy exit, leaving the group in its
    exit path (G1). A call in flight at the kill would have unknown delivery,
    retried only if idempotent: not what this test relies on.
    """
    node = gateway_cluster.python_caller()
    async with Program(node_cmd(str(DRIVER), "member", "default", "echo", "2"),
                       env=gateway_cluster.env()) as member:
        proxy = Pid.parse((await member.line(r"^registered (\S+) (\S+)$")).group(2))
        caller = await kill_member_between_calls(node, "echo", proxy, member, "node")
    assert caller.failures == []
    assert caller.count("node") >= 3


async def test_a_node_member_stopped_with_sigterm_drains_its_calls_in_flight(
        gateway_cluster: Any) -> None:
    """Close (the DELETE of the registration) takes the member out of the
    group and lets the calls it is serving finish: three slow calls in
    flight at SIGTERM all get their replies, and the close reports them."""
    node = gateway_cluster.python_caller()
    async with Program(node_cmd(str(DRIVER), "member", "default", "drain-node", "4"),
                       env=gateway_cluster.env()) as member:
        await sigterm_drains_calls_in_flight(node, "drain-node", member, "node")
