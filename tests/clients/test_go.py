"""The Go client (clients/go/) against a real 2-node cluster (``gateway_cluster``).

Built with the standard library only into a temporary directory (its own
GOCACHE; GOPROXY=off, so nothing is downloaded): the client's own unit tests
(``go test``: the mapping against the gateway's vectors, the client and the
member against a fake gateway), its test program
``clients/go/internal/testdriver``, and the README's two programs, run as
written.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
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

CLIENT = ROOT / "clients" / "go"
README = CLIENT / "README.md"


@pytest.fixture(scope="module")
def go_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("go")


def go_env(tmp: Path) -> dict[str, str]:
    """Go's environment for a build that never touches the network or $HOME."""
    return dict(os.environ, GOCACHE=str(tmp / "cache"), GOPATH=str(tmp / "path"),
                GOFLAGS="-mod=mod", GOPROXY="off", GOTOOLCHAIN="local", GO111MODULE="on",
                CGO_ENABLED="0", GOWORK="off")


def go_build(tmp: Path, package: str, out: Path, cwd: Path = CLIENT) -> Path:
    done = subprocess.run([need("go"), "build", "-o", str(out), package], cwd=cwd,
                          env=go_env(tmp), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def driver(go_dir: Path) -> Path:
    return go_build(go_dir, "./internal/testdriver", go_dir / "testdriver")


def build_program(go_dir: Path, name: str, source: str) -> Path:
    """A program of the README, as written, in a module that uses the client
    from this checkout."""
    module = go_dir / name
    module.mkdir()
    (module / "main.go").write_text(source)
    (module / "go.mod").write_text("module example.com/readme\n\ngo 1.19\n\n"
                                   "require shoal.dev/gateway v1.0.0\n\n"
                                   f"replace shoal.dev/gateway => {CLIENT}\n")
    return go_build(go_dir, ".", go_dir / f"{name}-program", cwd=module)


@pytest.fixture(scope="module")
def readme_caller(go_dir: Path) -> Path:
    """The README's example (built before any cluster starts: a build is slow)."""
    source = readme_example(README, "## Example", "go")
    assert source == readme_example(ROOT / "README.md", "### Go", "go")
    return build_program(go_dir, "example", source)


@pytest.fixture(scope="module")
def readme_member(go_dir: Path) -> Path:
    return build_program(go_dir, "member",
                         readme_example(README, "## Serving as a group member", "go"))


def test_the_go_clients_own_tests_pass(go_dir: Path) -> None:
    done = subprocess.run([need("go"), "test", "-count=1", "./..."], cwd=CLIENT,
                          env=go_env(go_dir), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok  \tshoal.dev/gateway\t" in done.stdout


async def test_the_go_mapping_reads_and_writes_every_document_as_the_gateway_does(
        driver: Path) -> None:
    documents = mapping_documents()
    code, out, err = await run([str(driver), "mapping"], stdin="\n".join(documents) + "\n")
    assert code == 0, err
    assert check_mapping(documents, out) == []


async def test_go_reads_every_error_answer_of_the_vectors_as_kind_and_retry_safe(
        driver: Path) -> None:
    answers = error_answers()
    code, out, err = await run([str(driver), "errors"],
                               stdin="\n".join(line for line, _ in answers) + "\n")
    assert code == 0, out + err
    assert out.splitlines() == [expected for _, expected in answers]


async def test_a_go_call_through_either_node_gets_the_groups_reply(
        driver: Path, gateway_cluster: Any) -> None:
    sent = {"n": 1, "blob": {"$bin": "00ff"}, "who": {"$pid": ["n1", 1, 2]}, "f": 1.5,
            "odd": {"$map": {"$x": [None, True]}}}
    for url in gateway_cluster.urls:
        code, out, err = await run([str(driver), "call", "default", "echo", json.dumps(sent)],
                                   env=gateway_cluster.env(url))
        assert code == 0, err
        kind, body = out.strip().split(" ", 1)
        assert kind == "reply", out
        assert json.loads(body) == sent


async def test_go_members_call_pid_cast_send_and_the_errors_of_dead_pid_empty_group_timeout(
        driver: Path, gateway_cluster: Any) -> None:
    code, out, err = await run([str(driver), "tour"], env=gateway_cluster.env())
    assert code == 0, out + err
    assert out.splitlines() == TOUR_WITH_DEADLINE


async def test_a_handler_crash_reaches_go_as_kind_crash_not_retry_safe(
        driver: Path, gateway_cluster: Any) -> None:
    code, out, err = await run([str(driver), "call", "default", "crash", '"x"'],
                               env=gateway_cluster.env())
    assert code == 0, err
    assert out.split() == ["error", "crash", "false", "builtins.ValueError", "502"]


async def test_a_wrong_token_is_unauthorized_for_go(driver: Path, gateway_cluster: Any) -> None:
    env = gateway_cluster.env()
    env["SHOAL_GATEWAY_TOKEN"] = "not-the-token"
    code, out, err = await run([str(driver), "call", "default", "echo", "1"], env=env)
    assert code == 0, err
    assert out.split() == ["error", "unauthorized", "true", "null", "401"]


async def test_the_go_readme_example_runs_as_written_and_is_the_one_in_the_main_readme(
        readme_caller: Path, gateway_cluster: Any) -> None:
    code, out, err = await run([str(readme_caller)], env=gateway_cluster.env())
    assert code == 0, err
    assert out.splitlines() == ["map[hello:world] <nil>", "crash false"]


async def test_the_go_readme_member_serves_the_group_and_drains_on_sigterm(
        readme_member: Path, gateway_cluster: Any) -> None:
    node = gateway_cluster.python_caller()
    async with Program([str(readme_member)], env=gateway_cluster.env()) as member:
        await readme_doubler_serves_and_leaves(node, member, "Go")


async def test_a_go_member_gets_calls_and_leaves_the_group_when_killed_with_no_failed_call(
        driver: Path, gateway_cluster: Any) -> None:
    """The Go member joins ``echo`` beside a Python member on each node; a
    steady Python caller (round_robin, not idempotent) reaches it; kill -9 of
    the Go process takes it out of the group and no call fails.

    Why none fails (the retry rule): the kill comes right after the Go member
    answered, from the only caller, so no call is in flight in the process.
    A call routed to the member afterwards finds its callback refusing
    connections: the proxy exits and the call fails as not started
    (``noproc``), which a group call retries on another member (G3); and the
    closed registration stream makes the proxy exit, leaving the group in its
    exit path (G1). A call in flight at the kill would have unknown delivery,
    retried only if idempotent: not what this test relies on.
    """
    node = gateway_cluster.python_caller()
    async with Program([str(driver), "member", "default", "echo", "2"],
                       env=gateway_cluster.env()) as member:
        proxy = Pid.parse((await member.line(r"^registered (\S+) (\S+)$")).group(2))
        caller = await kill_member_between_calls(node, "echo", proxy, member, "go")
    assert caller.failures == []
    assert caller.count("go") >= 3


async def test_a_go_member_stopped_with_sigterm_drains_its_calls_in_flight(
        driver: Path, gateway_cluster: Any) -> None:
    """Close (the DELETE of the registration) takes the member out of the
    group and lets the calls it is serving finish: three slow calls in
    flight at SIGTERM all get their replies, and the close reports them."""
    node = gateway_cluster.python_caller()
    async with Program([str(driver), "member", "default", "drain-go", "4"],
                       env=gateway_cluster.env()) as member:
        await sigterm_drains_calls_in_flight(node, "drain-go", member, "go")
