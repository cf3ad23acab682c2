"""Mutual TLS between nodes, configured with PEM files as a user would.

Two nodes in this process share a SQLite store and dial each other over
loopback. With certificates from one CA they call each other over TLS;
a node without TLS, or with a certificate from another CA, gets nowhere
and loses nothing (its calls fail as not started, G3).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.testing.tls import Pki, make_pki

SECRET = "node-tls-test-secret-0123456789"
WAIT = 5.0


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), names=("a", "b", "plain"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other-pki"), names=("x",), ca_name="other-ca")


async def _wait_seen(node: shoal.Node) -> None:
    """Wait, on group events, until ``node`` sees a's member of "g"."""
    async with node.groups.subscribe("g") as sub:
        if not sub.members:
            async with asyncio.timeout(WAIT):
                await sub.get()  # a's member joining, the only event of "g"


def _tls(pki: Pki, name: str) -> dict[str, Any]:
    return {"tls_cert": pki.cert(name), "tls_key": pki.key(name), "tls_ca": pki.ca}


@pytest.fixture
async def served(tmp_path: Path, pki: Pki) -> AsyncIterator[tuple[str, shoal.Node, shoal.Pid]]:
    """Node "a" serving TLS with one Echo member of group "g"."""
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET, **_tls(pki, "a")) as a:
        pid = await a.spawn(Echo)
        await a.groups.join("g", pid)
        await a.groups.sync(WAIT)
        yield store, a, pid


async def test_nodes_with_certificates_from_one_ca_call_each_other_over_tls(
        served: tuple[str, shoal.Node, shoal.Pid], pki: Pki) -> None:
    store, _, pid = served
    async with shoal.Node("b", store=store, secret=SECRET, **_tls(pki, "b")) as b:
        assert await b.call(pid, "over tls", WAIT) == "over tls"
        assert await b.groups.call("g", 7, timeout=WAIT) == 7
        conn = b._remote.manager.get("a") if b._remote.manager else None
        assert conn is not None and conn._transport is not None
        assert isinstance(conn._transport.get_extra_info("ssl_object"), ssl.SSLObject)


async def _refused_quickly(node: shoal.Node, pid: shoal.Pid) -> str:
    """A direct call and a group call to a node that refuses ``node``: both
    fail at once (not at their deadline), saying it refused."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(shoal.NodeDown) as info:
        await node.call(pid, "hello", WAIT)
    assert info.value.not_started and info.value.refused  # safe to retry elsewhere (G3)
    with pytest.raises(shoal.NoMembers) as caught:
        await node.groups.call("g", "hello", timeout=WAIT)
    assert "authentication refused by node 'a'" in str(caught.value)
    assert loop.time() - started < WAIT / 2
    return str(info.value)


async def test_a_node_without_tls_cannot_reach_a_tls_node(
        served: tuple[str, shoal.Node, shoal.Pid]) -> None:
    store, a, pid = served
    async with shoal.Node("plain", store=store, secret=SECRET) as plain:
        await _wait_seen(plain)
        assert "may use TLS where this node does not" in await _refused_quickly(plain, pid)
    assert a.running


async def test_a_certificate_from_another_ca_is_refused_both_ways(
        served: tuple[str, shoal.Node, shoal.Pid], stranger: Pki, pki: Pki) -> None:
    store, a, pid = served
    # x's certificate is from another CA; x trusts the cluster's CA, so only
    # the listener's check can refuse it.
    async with shoal.Node("x", store=store, secret=SECRET, tls_cert=stranger.cert("x"),
                          tls_key=stranger.key("x"), tls_ca=pki.ca) as x:
        await _wait_seen(x)
        assert "not trust this node's certificate" in await _refused_quickly(x, pid)
    # And a node that trusts only the other CA refuses a's certificate.
    async with shoal.Node("x2", store=store, secret=SECRET, tls_cert=stranger.cert("x"),
                          tls_key=stranger.key("x"), tls_ca=stranger.ca) as x2:
        await _wait_seen(x2)
        assert "certificate is not trusted here" in await _refused_quickly(x2, pid)
    assert a.running


async def test_tls_settings_come_from_the_environment_too(
        served: tuple[str, shoal.Node, shoal.Pid], pki: Pki,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, _, pid = served
    monkeypatch.setenv("SHOAL_TLS_CERT", str(pki.cert("b")))
    monkeypatch.setenv("SHOAL_TLS_KEY", str(pki.key("b")))
    monkeypatch.setenv("SHOAL_TLS_CA", str(pki.ca))
    monkeypatch.setenv("SHOAL_TLS_SERVER_NAME", "localhost")
    async with shoal.Node("b", store=store, secret=SECRET) as b:
        assert await b.call(pid, "env", WAIT) == "env"
