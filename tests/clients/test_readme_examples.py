"""The README's "Other languages" examples for curl and Python run as written
against a 2-node cluster, and print what the README says they print."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def example(heading: str, language: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Other languages", 1)[1].split("\n## ", 1)[0]
    part = section.split(f"### {heading}\n", 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", part, flags=re.S)
    assert found is not None, f"no {language} block under {heading}"
    return found.group(1)


async def _run(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_curl_example_calls_the_group(gateway_cluster: Any) -> None:
    assert shutil.which("curl"), "curl is needed (apt-get install curl)"
    script = example("curl", "sh")
    code, out, err = await _run("bash", "-eu", "-c", script, env=gateway_cluster.env())
    assert code == 0, err
    expected = script.strip().splitlines()[-1].removeprefix("# ")
    assert json.loads(out) == json.loads(expected)


async def test_the_python_example_calls_the_group_and_reads_an_error(
        gateway_cluster: Any) -> None:
    script = example("Python (standard library)", "python")
    code, out, err = await _run(sys.executable, "-c", script, env=gateway_cluster.env())
    assert code == 0, err
    member, _, reply = out.strip().partition(" ")
    assert member.startswith("<n") and json.loads(reply.replace("'", '"')) == {"sku": 42}
    crashing = script.replace("/v1/call/default/echo", "/v1/call/default/crash")
    code, out, err = await _run(sys.executable, "-c", crashing, env=gateway_cluster.env())
    assert code == 0, err
    assert out.strip() == "502 crash do not retry"
