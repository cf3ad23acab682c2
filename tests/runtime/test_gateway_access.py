"""Who may use a node's gateway (docs/gateway.md section 1): the token's
sources, the limits' settings, and HTTPS with the node's peer certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest

import shoal
from shoal.gateway.context import derive_token
from shoal.testing.tls import make_pki

SECRET = "gateway-access-secret-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHOAL_GATEWAY_TOKEN", "SHOAL_GATEWAY_TOKEN_FILE", "SHOAL_GATEWAY_MAX_BODY",
                 "SHOAL_GATEWAY_REMOTE", "SHOAL_HTTP_TLS", "SHOAL_SECRET", "SHOAL_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)


async def _status(url: str, token: str, ssl_context: ssl.SSLContext | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/v1/members/default/g", ssl=ssl_context or False,
            headers={"Authorization": f"Bearer {token}"}) as answer:
        return answer.status


def _url(node: shoal.Node, scheme: str = "http") -> str:
    host, port = node.http_address or ("", 0)
    return f"{scheme}://{host}:{port}"


async def test_the_token_is_derived_from_the_cluster_secret() -> None:
    async with shoal.Node("a", store="memory://", secret=SECRET, http="127.0.0.1:0") as node:
        assert node.gateway is not None
        assert node.gateway.token == derive_token(SECRET.encode())
        assert await _status(_url(node), derive_token(SECRET.encode())) == 200
        assert await _status(_url(node), derive_token(b"another-secret-0123456789")) == 401


async def test_a_configured_token_or_token_file_wins(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("SHOAL_GATEWAY_TOKEN", "from-the-environment-0123")
    async with shoal.Node("a", store="memory://", secret=SECRET, http="127.0.0.1:0") as node:
        assert await _status(_url(node), "from-the-environment-0123") == 200
        assert await _status(_url(node), derive_token(SECRET.encode())) == 401
    monkeypatch.delenv("SHOAL_GATEWAY_TOKEN")
    (tmp_path / "token").write_text("from-a-file-0123456789\n")
    monkeypatch.setenv("SHOAL_GATEWAY_TOKEN_FILE", str(tmp_path / "token"))
    async with shoal.Node("b", store="memory://", secret=SECRET, http="127.0.0.1:0") as node:
        assert await _status(_url(node), "from-a-file-0123456789") == 200


@pytest.mark.parametrize(("name", "value", "error"), [
    ("SHOAL_GATEWAY_TOKEN", "short", shoal.ConfigError),
    ("SHOAL_GATEWAY_TOKEN_FILE", "/nonexistent/token", shoal.ConfigError),
    ("SHOAL_GATEWAY_MAX_BODY", "lots", shoal.BadArgument),
    ("SHOAL_GATEWAY_REMOTE", "perhaps", shoal.ConfigError),
])
async def test_a_bad_setting_fails_the_start_naming_it(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str,
        error: type[Exception]) -> None:
    monkeypatch.setenv(name, value)
    node = shoal.Node("a", store="memory://", secret=SECRET, http="127.0.0.1:0")
    with pytest.raises(error, match=name if error is not shoal.ConfigError
                       or "TOKEN" not in name else "token"):
        await node.start()
    assert not node.running


async def test_https_with_the_peer_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, names=("a",))
    async with shoal.Node("a", store="memory://", secret=SECRET, http="127.0.0.1:0",
                          tls_cert=pki.cert("a"), tls_key=pki.key("a"), tls_ca=pki.ca,
                          http_tls=True) as node:
        client = ssl.create_default_context(cafile=str(pki.ca))
        token = derive_token(SECRET.encode())
        assert await _status(_url(node, "https"), token, client) == 200
        with pytest.raises(aiohttp.ClientError):
            await _status(_url(node, "http"), token)


async def test_https_without_a_certificate_is_a_configuration_error() -> None:
    node = shoal.Node("a", store="memory://", secret=SECRET, http="127.0.0.1:0", http_tls=True)
    with pytest.raises(shoal.ConfigError, match="--tls-cert"):
        await node.start()
