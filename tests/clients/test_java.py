"""The Java client (clients/java/) against a real 2-node cluster
(``gateway_cluster``): its test program is tests/clients/java/ClientCheck.java,
compiled with the client by plain javac into a temporary directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from client_support import (
    ROOT,
    check_mapping,
    error_answers,
    mapping_documents,
    need,
    readme_example,
    run,
)

CLIENT = ROOT / "clients" / "java"
README = CLIENT / "README.md"


def compile_java(out: Path, *extra: Path) -> Path:
    """javac the client and ``extra`` sources into ``out``; the class path."""
    sources = sorted((CLIENT / "src").rglob("*.java")) + list(extra)
    done = subprocess.run([need("javac"), "-Xlint:all", "-Werror", "-d", str(out),
                           *map(str, sources)], capture_output=True, text=True, timeout=180)
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
    (tmp_path / "Example.java").write_text(readme_example(README, "## Example", "java"))
    classes = compile_java(tmp_path / "classes", tmp_path / "Example.java")
    code, out, err = await run(java(classes, "Example"), env=gateway_cluster.env())
    assert code == 0, err
    assert out.splitlines() == ["{hello=world}", "crash retrySafe=false builtins.ValueError"]
