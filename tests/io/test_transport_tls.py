"""The transport's TLS seam and its handshake deadline, on loopback."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess

import pytest

from shoal.errors import NodeDown
from shoal.pid import Pid
from shoal.transport import ConnectionManager, TransportConfig
from shoal.wire import Send

SECRET = b"tls-test-secret"
DEADLINE = 5.0


class Inbox:
    def __init__(self) -> None:
        self.messages: asyncio.Queue[object] = asyncio.Queue()

    def on_message(self, peer: object, msg: object) -> None:
        self.messages.put_nowait(msg)

    def on_peer_up(self, peer_name: str, creation: int, connection: object) -> None: ...
    def on_peer_down(self, peer_name: str, creation: int, reason: str) -> None: ...
    def on_peer_silent(self, peer_name: str, creation: int) -> None: ...
    def on_peer_alive(self, peer_name: str, creation: int) -> None: ...


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    tmp_path = tmp_path_factory.mktemp("tls")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def test_managers_connect_and_exchange_messages_over_tls(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls_contexts
    common = {"cluster": "tls", "secret": SECRET, "tls_server_hostname": "localhost"}
    inbox = Inbox()
    a = ConnectionManager(
        TransportConfig(node="a", creation=1, server_ssl=server_ctx, **common), Inbox()
    )
    b = ConnectionManager(
        TransportConfig(node="b", creation=1, client_ssl=client_ctx, **common), inbox
    )
    await a.start()
    await b.start()
    conn = await b.connect("a", a.address, timeout=DEADLINE)
    assert conn._transport is not None and conn._transport.get_extra_info("ssl_object")
    a_side = a.get("b")
    assert a_side is not None
    a_side.send(Send(to=Pid.of("b", 1, 1), message="over tls"))
    msg = await asyncio.wait_for(inbox.messages.get(), DEADLINE)
    assert msg == Send(to=Pid.of("b", 1, 1), message="over tls")
    await a.close()
    await b.close()


async def test_plain_client_cannot_connect_to_a_tls_listener(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls_contexts
    a = ConnectionManager(
        TransportConfig(cluster="tls", node="a", creation=1, secret=SECRET, server_ssl=server_ctx,
                        handshake_timeout=0.5),
        Inbox(),
    )  # fmt: skip
    b = ConnectionManager(
        TransportConfig(cluster="tls", node="b", creation=1, secret=SECRET,
                        handshake_timeout=0.5, max_connect_attempts=1),
        Inbox(),
    )  # fmt: skip
    await a.start()
    with pytest.raises(NodeDown):
        await b.connect("a", a.address, timeout=DEADLINE)
    await a.close()
    await b.close()


async def test_peer_that_never_completes_the_handshake_is_dropped_at_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.transport")
    a = ConnectionManager(
        TransportConfig(cluster="c", node="a", creation=1, secret=SECRET, handshake_timeout=0.2),
        Inbox(),
    )
    await a.start()
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(*a.address)
    started = loop.time()
    assert await asyncio.wait_for(reader.read(), DEADLINE) == b""  # closed by the listener
    assert loop.time() - started < 2.0
    assert any("timed out" in r.getMessage() for r in caplog.records)
    writer.close()
    await a.close()
