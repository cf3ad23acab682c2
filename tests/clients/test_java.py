"""The Java client (clients/java/) against a real 2-node cluster
(``gateway_cluster``): its test program is tests/clients/java/ClientCheck.java,
compiled with the client by plain javac into a temporary directory."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from client_support import (
    ROOT,
    Program,
    check_mapping,
    error_answers,
    kill_member_between_calls,
    mapping_documents,
    need,
    other_languages_example,
    post_without_token,
    readme_example,
    run,
)

from shoal.errors import BadRequest
from shoal.pid import Pid
from shoal.testing import wait_until

CLIENT = ROOT / "clients" / "java"
README = CLIENT / "README.md"


def compile_java(out: Path, *extra: Path) -> Path:
    """javac the client and ``extra`` sources into ``out``; the class path."""
    sources = sorted((CLIENT / "src").rglob("*.java")) + list(extra)
    # --release 11: the client (and its README's examples) must build on the JDK 11 it names.
    done = subprocess.run([need("javac"), "--release", "11", "-Xlint:all", "-Werror",
                           "-d", str(out), *map(str, sources)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_java(tmp_path_factory.mktemp("java"),
                        ROOT / "tests" / "clients" / "java" / "ClientCheck.java")


def java(classes: Path, *args: str) -> list[str]:
    return [need("java"), "-cp", str(classes), *args]


async def test_the_java_mapping_decodes_and_encodes_every_vector_as_the_gateway_does(
        classes: Path) -> None:
    documents = mapping_documents()
    code, out, err = await run(java(classes, "ClientCheck", "mapping"),
                               stdin="\n".join(documents) + "\n")
    assert code == 0, err
    assert check_mapping(documents, out) == []


async def test_java_reads_every_error_answer_of_the_vectors_as_kind_and_retry_safe(
        classes: Path) -> None:
    answers = error_answers()
    code, out, err = await run(java(classes, "ClientCheck", "errors"),
                               stdin="\n".join(line for line, _ in answers) + "\n")
    assert code == 0, out + err
    assert out.splitlines() == [expected for _, expected in answers]


async def test_a_java_call_through_either_node_gets_the_groups_reply(
        classes: Path, gateway_cluster: Any) -> None:
    sent = {"n": 1, "blob": {"$bin": "00ff"}, "who": {"$pid": ["n1", 1, 2]}, "f": 1.5}
    for url in gateway_cluster.urls:
        code, out, err = await run(java(classes, "ClientCheck", "call", "default", "echo",
                                        json.dumps(sent)), env=gateway_cluster.env(url))
        assert code == 0, err
        kind, body = out.strip().split(" ", 1)
        assert kind == "reply"
        assert json.loads(body) == sent


async def test_java_reads_members_calls_a_pid_casts_sends_and_gets_each_errors_kind(
        classes: Path, gateway_cluster: Any) -> None:
    code, out, err = await run(java(classes, "ClientCheck", "tour"), env=gateway_cluster.env())
    assert code == 0, out + err
    assert out.splitlines() == [
        "members 2 2", 'callPid "hi"', "cast true", "castPid ok", "send ok",
        "dead noproc true 404",  # a pid that is not alive
        "empty no_members true 404",  # a group with no member
        "slow timeout false 504",  # the gateway enforces the call's timeout (0.5 s here)
        "tiny timeout false 504",  # a timeout under a millisecond is sent as one
    ]


async def test_a_handler_crash_reaches_java_as_kind_crash_not_retry_safe(
        classes: Path, gateway_cluster: Any) -> None:
    code, out, err = await run(java(classes, "ClientCheck", "call", "default", "crash", '"x"'),
                               env=gateway_cluster.env())
    assert code == 0, err
    assert out.split() == ["error", "crash", "false", "builtins.ValueError", "502"]


async def test_a_wrong_token_is_unauthorized_for_java(classes: Path, gateway_cluster: Any) -> None:
    env = gateway_cluster.env()
    env["SHOAL_GATEWAY_TOKEN"] = "not-the-token"
    code, out, err = await run(java(classes, "ClientCheck", "call", "default", "echo", "1"),
                               env=env)
    assert code == 0, err
    assert out.split() == ["error", "unauthorized", "true", "null", "401"]


async def test_the_java_readme_example_runs_as_written(
        tmp_path: Path, gateway_cluster: Any) -> None:
    written = readme_example(README, "## Example", "java")
    assert other_languages_example("Java", "java") == written  # the project README shows it too
    (tmp_path / "Example.java").write_text(written)
    classes = compile_java(tmp_path / "classes", tmp_path / "Example.java")
    code, out, err = await run(java(classes, "Example"), env=gateway_cluster.env())
    assert code == 0, err
    assert out.splitlines() == ["{hello=world}", "crash retrySafe=false builtins.ValueError"]


async def test_a_java_member_gets_calls_and_leaves_the_group_when_killed_with_no_failed_call(
        classes: Path, gateway_cluster: Any) -> None:
    """The Java member joins ``echo`` beside a Python member on each node; a
    steady Python caller (round_robin, not idempotent) reaches it; kill -9 of
    the JVM takes it out of the group and no call fails.

    Why none fails (the retry rule): the kill comes right after the Java
    member answered, from the only caller, so no call is in flight in the JVM.
    A call routed to the member afterwards finds its callback refusing
    connections: the proxy exits and the call fails as not started
    (``noproc``), which a group call retries on another member (G3). A call
    in flight at the kill would have unknown delivery, retried only if
    idempotent: not what this test relies on.
    """
    node = gateway_cluster.python_caller()
    async with Program(java(classes, "ClientCheck", "member", "default", "echo", "2"),
                       env=gateway_cluster.env()) as member:
        registered = await member.line(r"^registered (\S+) (\S+) (\S+)$")
        proxy = Pid.parse(registered.group(2))
        assert await post_without_token(registered.group(3)) == 401  # only the gateway may call
        caller = await kill_member_between_calls(node, "echo", proxy, member, "java")
    assert caller.failures == []


async def test_the_java_readme_member_serves_rejects_and_leaves_on_sigterm(
        tmp_path: Path, gateway_cluster: Any) -> None:
    source = tmp_path / "PriceMember.java"
    source.write_text(readme_example(README, "## Serving as a group member", "java"))
    classes = compile_java(tmp_path / "classes", source)
    node = gateway_cluster.python_caller()
    async with Program(java(classes, "PriceMember"), env=gateway_cluster.env()) as member:
        proxy = Pid.parse((await member.line(r"^serving as (\S+)$")).group(1))
        await wait_until(lambda: proxy in node.groups.get_members("prices"), timeout=10.0,
                         what="the README's member in its group")
        assert await node.groups.call("prices", {"sku": "A-1"}) == {"price": 42}
        with pytest.raises(BadRequest, match="want an object"):
            await node.groups.call("prices", "A-1")
        member.signal(signal.SIGTERM)
        assert await member.exit_code() == 128 + signal.SIGTERM  # the JVM's exit after its hooks
        await wait_until(lambda: proxy not in node.groups.get_members("prices"), timeout=10.0,
                         what="the stopped member out of its group")
