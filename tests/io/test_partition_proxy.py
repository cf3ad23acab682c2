"""The partition proxy on its own: it names the dialler from its HELLO,
stalls (never drops) bytes across a cut, and forwards what it cannot read."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from shoal.testing.partition import Partitions
from shoal.wire import Hello, encode_message


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[Partitions, int]]:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    partitions = Partitions()
    port = await partitions.proxy("b")
    partitions.target("b", "127.0.0.1", server.sockets[0].getsockname()[1])
    yield partitions, port
    await partitions.close()
    server.close()
    await server.wait_closed()


def hello(node: str) -> bytes:
    return encode_message(Hello(min_version=1, max_version=1, cluster="c", node=node,
                                creation=1, nonce=os.urandom(32)))


async def test_bytes_stall_across_a_cut_and_arrive_whole_after_heal(
        proxied: tuple[Partitions, int]) -> None:
    partitions, port = proxied
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    first = hello("a")
    writer.write(first)
    assert await asyncio.wait_for(reader.readexactly(len(first)), 5) == first
    partitions.cut("a", "b")
    writer.write(b"held back")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(9), 0.3)  # nothing crosses a cut
    partitions.heal("a", "b")
    assert await asyncio.wait_for(reader.readexactly(9), 5) == b"held back"
    writer.close()


async def test_a_dialler_it_cannot_name_is_forwarded_and_never_cut(
        proxied: tuple[Partitions, int]) -> None:
    partitions, port = proxied
    partitions.cut("a", "b")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    tls_like = b"\x16\x03\x01\x02\x00" + b"x" * 64  # a TLS record, not a shoal frame
    writer.write(tls_like)
    assert await asyncio.wait_for(reader.readexactly(len(tls_like)), 5) == tls_like
    writer.close()


async def test_a_one_way_cut_stalls_only_that_direction(
        proxied: tuple[Partitions, int]) -> None:
    partitions, port = proxied
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    first = hello("a")
    writer.write(first)
    assert await asyncio.wait_for(reader.readexactly(len(first)), 5) == first
    partitions.cut("b", "a", one_way=True)  # the node's answers stall; a's bytes go through
    writer.write(b"ping")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.3)
    partitions.heal()
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    writer.close()
