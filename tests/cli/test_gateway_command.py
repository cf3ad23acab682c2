"""``shoal gateway`` (a sidecar node serving only the gateway), ``shoal
gateway-token``, and the gateway's flags of ``shoal run`` (docs/gateway.md section 1)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import shoal
from shoal.cli.main import main
from shoal.gateway.context import derive_token
from shoal.testing.cluster import free_port

SECRET = "gateway-command-secret-0123456789"


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return ["echoed", request]


def test_gateway_token_prints_the_token_derived_from_the_secret(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.delenv("SHOAL_GATEWAY_TOKEN", raising=False)
    monkeypatch.delenv("SHOAL_GATEWAY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    assert main(["gateway-token", "--store", f"sqlite://{tmp_path}/c.db"]) == 0
    assert capsys.readouterr().out.strip() == derive_token(SECRET.encode())
    monkeypatch.setenv("SHOAL_GATEWAY_TOKEN", "configured-token-0123456789")
    assert main(["gateway-token"]) == 0
    assert capsys.readouterr().out.strip() == "configured-token-0123456789"


def test_gateway_token_without_a_secret_fails_and_creates_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    for name in ("SHOAL_GATEWAY_TOKEN", "SHOAL_GATEWAY_TOKEN_FILE", "SHOAL_SECRET",
                 "SHOAL_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["gateway-token", "--store", f"sqlite://{tmp_path}/c.db"]) == 2
    assert "no cluster secret" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_run_passes_the_gateway_flags_to_its_node(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gw_flags_app.py").write_text(
        "import signal\nseen = {}\n\n\nasync def setup(node):\n"
        "    seen['remote'] = node.gateway.allow_remote\n"
        "    signal.raise_signal(signal.SIGTERM)\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gw_flags_app", raising=False)
    monkeypatch.delenv("SHOAL_GATEWAY_REMOTE", raising=False)
    store = f"sqlite://{tmp_path}/cluster.db"
    assert main(["run", "gw_flags_app:setup", "--node", "m", "--store", store,
                 "--http", "127.0.0.1:0", "--gateway-remote"]) == 0
    assert sys.modules["gw_flags_app"].seen == {"remote": True}


async def test_a_gateway_sidecar_calls_a_group_hosted_elsewhere_and_stops_on_sigterm(
        tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    port = free_port()
    env = dict(os.environ, SHOAL_SECRET=SECRET)
    env.pop("SHOAL_GATEWAY_TOKEN", None)
    env.pop("SHOAL_GATEWAY_TOKEN_FILE", None)
    async with shoal.Node("app", store=store, secret=SECRET, http="") as node:
        await node.groups.join("prices", await node.spawn(Echo))
        await node.groups.sync()
        sidecar = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shoal.cli", "gateway", "--http", f"127.0.0.1:{port}",
            "--node", "sidecar", "--store", store, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert sidecar.stdout is not None
            line = await asyncio.wait_for(sidecar.stdout.readline(), 30)
            assert b"shoal node sidecar ready" in line
            headers = {"Authorization": f"Bearer {derive_token(SECRET.encode())}"}
            async with aiohttp.ClientSession() as session, session.post(
                    f"http://127.0.0.1:{port}/v1/call/default/prices", json={"sku": 7},
                    headers=headers) as answer:
                assert answer.status == 200
                assert await answer.json() == ["echoed", {"sku": 7}]
                assert answer.headers["Shoal-Member"].startswith("<app.")
            sidecar.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(sidecar.wait(), 30) == 0
        finally:
            if sidecar.returncode is None:
                sidecar.kill()
                await sidecar.wait()


def test_gateway_needs_an_http_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway"]) == 2
    assert "--http" in capsys.readouterr().err
