"""The PHP client (clients/php/) against a real 2-node cluster
(``gateway_cluster``): its test program is tests/clients/php/client_check.php;
the member is the README's callback script under ``php -S`` with the
README's renewal helper (TTL mode)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from client_support import (
    ROOT,
    check_mapping,
    error_answers,
    mapping_documents,
    need,
    readme_example,
    run,
)

CLIENT = ROOT / "clients" / "php"
README = CLIENT / "README.md"
CHECK = str(ROOT / "tests" / "clients" / "php" / "client_check.php")
KEEPER = str(CLIENT / "bin" / "shoal-member.php")


def php(*args: str) -> list[str]:
    return [need("php"), *args]


async def test_the_php_mapping_decodes_and_encodes_every_vector_as_the_gateway_does() -> None:
    documents = mapping_documents()
    code, out, err = await run(php(CHECK, "mapping"), stdin="\n".join(documents) + "\n")
    assert code == 0, out + err
    assert check_mapping(documents, out) == []


async def test_php_reads_every_error_answer_of_the_vectors_as_kind_and_retry_safe() -> None:
    answers = error_answers()
    code, out, err = await run(php(CHECK, "errors"),
                               stdin="\n".join(line for line, _ in answers) + "\n")
    assert code == 0, out + err
    assert out.splitlines() == [expected for _, expected in answers]


async def test_a_php_call_through_either_node_gets_the_groups_reply(gateway_cluster: Any) -> None:
    sent = {"n": 1, "blob": {"$bin": "00ff"}, "who": {"$pid": ["n1", 1, 2]}, "f": 1.5}
    for url in gateway_cluster.urls:
        code, out, err = await run(php(CHECK, "call", "default", "echo", json.dumps(sent)),
                                   env=gateway_cluster.env(url))
        assert code == 0, out + err
        kind, body = out.strip().split(" ", 1)
        assert kind == "reply"
        assert json.loads(body) == sent


async def test_a_handler_crash_reaches_php_as_kind_crash_not_retry_safe(
        gateway_cluster: Any) -> None:
    code, out, err = await run(php(CHECK, "call", "default", "crash", '"x"'),
                               env=gateway_cluster.env())
    assert code == 0, out + err
    assert out.split() == ["error", "crash", "false", "builtins.ValueError", "502"]


async def test_a_wrong_token_is_unauthorized_for_php(gateway_cluster: Any) -> None:
    env = dict(gateway_cluster.env(), SHOAL_GATEWAY_TOKEN="not-the-token")
    code, out, err = await run(php(CHECK, "call", "default", "echo", "1"), env=env)
    assert code == 0, out + err
    assert out.split() == ["error", "unauthorized", "true", "null", "401"]


async def test_the_php_readme_example_runs_as_written(tmp_path: Path, gateway_cluster: Any) -> None:
    example = tmp_path / "example.php"
    example.write_text(readme_example(README, "## Example", "php"))
    code, out, err = await run(php(str(example)), env=gateway_cluster.env())
    assert code == 0, out + err
    assert out.splitlines() == ['{"hello":"world"}', "crash retrySafe=false builtins.ValueError"]
