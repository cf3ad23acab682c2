"""A node reachable at another address than the one it listens on.

Peers dial what a node advertises in its store record, so ``advertise``
must be what ends up there and what peers use: a DNS name, or an address
and port behind NAT or a container's port mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.cli.inspect import read_cluster
from shoal.runtime.config import parse_advertise

SECRET = "advertise-test-secret-0123456789"
WAIT = 5.0


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


@pytest.mark.parametrize(("given", "parsed"), [
    ("10.0.0.5:7000", ("10.0.0.5", 7000)),
    ("api-1.internal", ("api-1.internal", 0)),
    ("api-1.internal:0", ("api-1.internal", 0)),
    ("[::1]:7000", ("::1", 7000)),
    ("fe80::1", ("fe80::1", 0)),
])
def test_advertise_takes_a_host_with_or_without_a_port(
        given: str, parsed: tuple[str, int]) -> None:
    assert parse_advertise(given) == parsed


@pytest.mark.parametrize("given", ["", "  ", "host:port", "host:70000", "a b:7000", "x/y"])
def test_a_bad_advertise_address_is_refused_naming_the_argument(given: str) -> None:
    with pytest.raises(shoal.BadArgument) as info:
        parse_advertise(given)
    assert info.value.argument == "advertise"


def test_advertise_without_a_listener_is_refused() -> None:
    with pytest.raises(shoal.BadArgument, match="without a listener"):
        shoal.Node("n", store="memory://", listen=None, advertise="10.0.0.5:7000")


async def test_peers_dial_the_advertised_name_and_the_listened_port(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET, listen="127.0.0.1:0",
                          advertise="localhost") as a, \
            shoal.Node("b", store=store, secret=SECRET) as b:
        pid = await a.spawn(Echo)
        assert a.address is not None
        view = await read_cluster(store, None)
        assert (view.nodes["a"]["host"], view.nodes["a"]["port"]) == ("localhost", a.address[1])
        assert await b.call(pid, "by name", WAIT) == "by name"
        assert b.cluster_view.peer("a").address == ("localhost", a.address[1])


async def test_an_advertised_address_nobody_serves_makes_calls_fail_unstarted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    # From the environment, as a container would set it; port 1 serves nothing.
    monkeypatch.setenv("SHOAL_ADVERTISE", "127.0.0.1:1")
    async with shoal.Node("a", store=store, secret=SECRET) as a:
        monkeypatch.delenv("SHOAL_ADVERTISE")
        pid = await a.spawn(Echo)
        async with shoal.Node("b", store=store, secret=SECRET) as b:
            with pytest.raises(shoal.NodeDown) as info:
                await b.call(pid, "lost", 2.0)
            assert info.value.not_started


async def test_an_advertised_name_that_does_not_resolve_fails_calls_unstarted(
        tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET,
                          advertise="no-such-host.invalid") as a:
        pid = await a.spawn(Echo)
        async with shoal.Node("b", store=store, secret=SECRET) as b:
            with pytest.raises(shoal.NodeDown) as info:
                await b.call(pid, "lost", 2.0)
            assert info.value.not_started
