"""The PHP client (clients/php/) against a real 2-node cluster
(``gateway_cluster``): its test program is tests/clients/php/client_check.php;
the member is the README's callback script under ``php -S`` with the
README's renewal helper (TTL mode)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from client_support import (
    ROOT,
    Program,
    check_mapping,
    error_answers,
    kill_member_between_calls,
    mapping_documents,
    need,
    other_languages_example,
    port_open,
    post_without_token,
    readme_example,
    run,
)

from shoal.pid import Pid
from shoal.testing import wait_until
from shoal.testing.ports import free_port

CLIENT = ROOT / "clients" / "php"
README = CLIENT / "README.md"
CHECK = str(ROOT / "tests" / "clients" / "php" / "client_check.php")
KEEPER = str(CLIENT / "bin" / "shoal-member.php")


def php(*args: str) -> list[str]:
    return [need("php"), *args]


@asynccontextmanager
async def php_member(tmp_path: Path, env: dict[str, str], group: str, *, ttl: int = 5,
                     concurrency: int = 1, workers: int = 0,
                     ) -> AsyncIterator[tuple[Program, Program, Pid]]:
    """The README's callback script under ``php -S`` (one process unless
    ``workers``) and the README's renewal helper registering it in ``group``:
    (the server, the helper, the proxy's pid)."""
    script = tmp_path / "callback.php"
    script.write_text(readme_example(README, "The callback script", "php"))
    port = free_port()
    env = dict(env, SHOAL_CALLBACK_TOKEN=secrets.token_hex(16))
    if workers:
        env["PHP_CLI_SERVER_WORKERS"] = str(workers)
    async with Program(php("-S", f"127.0.0.1:{port}", str(script)), env=env,
                       output=tmp_path / "php-server.log", own_group=True) as server:
        await wait_until(lambda: port_open(port), timeout=10.0, what="php -S listening")
        async with Program(php(KEEPER, "--group", group, "--callback", f"http://127.0.0.1:{port}/",
                               "--ttl", str(ttl), "--concurrency", str(concurrency)),
                           env=env) as keeper:
            registered = await keeper.line(r"^registered (\S+) (\S+)$")
            yield server, keeper, Pid.parse(registered.group(2))


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


async def test_php_reads_members_calls_a_pid_casts_sends_and_gets_each_errors_kind(
        gateway_cluster: Any) -> None:
    code, out, err = await run(php(CHECK, "tour"), env=gateway_cluster.env())
    assert code == 0, out + err
    assert out.splitlines() == [
        "members 2 2", 'callPid "hi"', "cast true", "castPid ok", "send ok",
        "dead noproc true 404",  # a pid that is not alive
        "empty no_members true 404",  # a group with no member
        "slow timeout false 504",  # the gateway enforces the call's timeout (0.5 s here)
        "tiny timeout false 504",  # a timeout under a millisecond is sent as one
    ]


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
    written = readme_example(README, "## Example", "php")
    assert other_languages_example("PHP", "php") == written  # the project README shows it too
    example = tmp_path / "example.php"
    example.write_text(written)
    code, out, err = await run(php(str(example)), env=gateway_cluster.env())
    assert code == 0, out + err
    assert out.splitlines() == ['{"hello":"world"}', "crash retrySafe=false builtins.ValueError"]


async def test_a_php_member_gets_calls_and_leaves_the_group_when_its_server_is_killed(
        tmp_path: Path, gateway_cluster: Any) -> None:
    """The README's callback (``php -S``, one process) joins ``echo`` beside
    a Python member on each node through the README's renewal helper; a
    steady Python caller (round_robin, not idempotent) reaches it; kill -9 of
    the ``php -S`` process takes it out of the group with no failed call.

    Why none fails (the retry rule): the kill comes right after the PHP
    member answered, from the only caller, so no call is in flight in PHP.
    The next call routed to the member finds the callback refusing
    connections: the proxy exits and the call fails as not started
    (``noproc``), which a group call retries on another member (G3). The
    helper then finds its registration gone and exits 3, as documented.
    """
    node = gateway_cluster.python_caller()
    async with php_member(tmp_path, gateway_cluster.env(), "echo") as (server, keeper, proxy):
        # Only the gateway may call: the README's script refuses anyone
        # without SHOAL_CALLBACK_TOKEN, the registration's callback_token.
        assert await post_without_token(f"http://{server.args[2]}/") == 401
        caller = await kill_member_between_calls(node, "echo", proxy, server, "php")
        assert caller.failures == []
        assert await keeper.exit_code() == 3
        assert any("ended: its proxy exited" in line for line in await keeper.rest())
