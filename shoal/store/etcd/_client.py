"""A narrow, typed connection to one etcd endpoint, for :mod:`shoal.store.etcd._store`.

What it owns: one gRPC channel to one etcd member, built on aetcd's generated
protocol stubs (``aetcd.rpc``), the calls the store needs (range, txn, lease
grant/keepalive/revoke, compact, watch streams) and the translation of every
gRPC failure into one internal error, :class:`EtcdCallError`, whose ``kind``
tells the store what to do (try another endpoint, report the session over,
re-sync, give up).

Rules:

- Rule 1: every unary call carries a deadline; nothing here waits forever.
  Watch streams carry none (they are long-lived) but their creation does, and
  gRPC keepalive pings detect a silent peer.
- Rule 2: no raw gRPC exception leaves this module; callers see
  :class:`EtcdCallError` only, and the store maps it to shoal's errors.

Why not ``aetcd.Client``: it dials ``insecure_channel`` only (no TLS), talks to
one host, fetches an auth token once and never renews it (etcd's simple tokens
expire after 5 idle minutes), maps "lease not found" to a generic error, and
its watch hands events over one by one, losing the response boundaries that
keep the events of one revision together. The stubs underneath are sound, so
this module uses them directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import grpc  # type: ignore[import-untyped, unused-ignore]  # grpcio: untyped
from aetcd import rpc  # type: ignore[import-untyped, unused-ignore]  # aetcd: untyped

__all__ = [
    "ChannelConfig",
    "EndpointConnection",
    "ErrorKind",
    "EtcdCallError",
    "KeyValue",
    "WatchBatch",
    "WatchEvent",
    "WatchStream",
    "compare_created",
    "compare_lease",
    "compare_mod",
    "delete_op",
    "delete_range_op",
    "prefix_end",
    "put_op",
    "range_op",
]

ErrorKind = Literal["unavailable", "lease_not_found", "compacted", "auth", "invalid", "failed"]

# Codes after which another endpoint (or a later attempt) may well succeed.
_RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "ABORTED", "UNKNOWN"}

_CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    # Reconnect quickly after an etcd restart: gRPC's default backoff grows to 120 s.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Detect a silent peer under a long-lived watch. etcd refuses pings more
    # often than every 5 s (--grpc-keepalive-min-time), so stay above that.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    # A snapshot of a large cluster is one Range response; gRPC's default cap is 4 MiB.
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
)


class EtcdCallError(Exception):
    """One failed call to one endpoint.

    Attributes:
        kind: what the caller should do about it (see :data:`ErrorKind`).
        endpoint: ``host:port`` of the endpoint that failed.
        detail: the server's or transport's explanation.
        compact_revision: for ``"compacted"``, the oldest revision still kept.
    """

    def __init__(
        self, kind: ErrorKind, endpoint: str, detail: str, compact_revision: int = 0
    ) -> None:
        self.kind: ErrorKind = kind
        self.endpoint = endpoint
        self.detail = detail
        self.compact_revision = compact_revision
        super().__init__(f"{endpoint}: {detail}")


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How to dial every endpoint.

    Attributes:
        ca, cert, key: PEM file contents for TLS (``ca`` alone for server
            verification, ``cert`` + ``key`` for client certificates).
        user, password: etcd role-based authentication.
    """

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    user: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        """True when any TLS material is configured."""
        return self.ca is not None or self.cert is not None


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key as etcd reports it (the key still carries the store's prefix)."""

    key: bytes
    value: bytes
    lease: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch event. A delete's ``kv`` holds the key and the revision of
    the delete only: watches do not ask for previous values (``prev_kv``)."""

    kind: Literal["put", "delete"]
    kv: KeyValue


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """The events of one watch response; etcd never splits a revision between
    responses (fragmenting is off), so a batch holds whole revisions."""

    events: tuple[WatchEvent, ...]


def _kv(raw: Any) -> KeyValue:
    return KeyValue(bytes(raw.key), bytes(raw.value), int(raw.lease), int(raw.mod_revision))


def _translate(error: BaseException, endpoint: str) -> EtcdCallError:
    """Turn any transport or server failure into an :class:`EtcdCallError`."""
    if isinstance(error, EtcdCallError):
        return error
    if isinstance(error, TimeoutError):
        return EtcdCallError("unavailable", endpoint, "no answer before the deadline")
    if isinstance(error, grpc.aio.AioRpcError):
        code = error.code().name
        detail = error.details() or code
        if code == "NOT_FOUND" and "lease" in detail:
            return EtcdCallError("lease_not_found", endpoint, detail)
        if code == "OUT_OF_RANGE" and "compacted" in detail:
            return EtcdCallError("compacted", endpoint, detail)
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or "authentication failed" in detail:
            return EtcdCallError("auth", endpoint, detail)
        if code == "INVALID_ARGUMENT":
            return EtcdCallError("invalid", endpoint, detail)
        if code in _RETRYABLE:
            return EtcdCallError("unavailable", endpoint, f"{code.lower()}: {detail}")
        return EtcdCallError("failed", endpoint, f"{code.lower()}: {detail}")
    return EtcdCallError("failed", endpoint, f"{type(error).__name__}: {error}")


# --- building requests -------------------------------------------------------


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def put_op(key: bytes, value: bytes, lease: int) -> Any:
    """A transaction operation writing ``value`` under ``key`` owned by ``lease``."""
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))


def delete_op(key: bytes) -> Any:
    """A transaction operation deleting ``key`` (absent is fine)."""
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))


def delete_range_op(key: bytes, end: bytes) -> Any:
    """A transaction operation deleting every key in ``[key, end)``."""
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key, range_end=end))


def compare_mod(key: bytes, revision: int) -> Any:
    """A comparison that holds when ``key`` was last written at ``revision``."""
    return rpc.Compare(
        key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
    )


def range_op(key: bytes) -> Any:
    """A transaction operation reading ``key``."""
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))


def compare_created(key: bytes) -> Any:
    """A comparison that holds when ``key`` does not exist."""
    return rpc.Compare(
        key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
    )


def compare_lease(key: bytes, lease: int) -> Any:
    """A comparison that holds when ``key`` exists and is owned by ``lease``."""
    return rpc.Compare(key=key, target=rpc.Compare.LEASE, result=rpc.Compare.EQUAL, lease=lease)


# --- the connection ----------------------------------------------------------


class WatchStream:
    """One open watch on one endpoint. Read with :meth:`next_batch`."""

    def __init__(self, call: Any, endpoint: str) -> None:
        self._call = call
        self.endpoint = endpoint

    async def next_batch(self) -> WatchBatch:
        """Wait for the next response that carries events.

        Returns:
            The events of that response (progress notifications are skipped).

        Raises:
            EtcdCallError: ``"compacted"`` when etcd no longer has the requested
                revisions; ``"unavailable"`` when the stream broke or etcd
                cancelled it (leader lost, member stopping).
        """
        while True:
            try:
                response = await self._call.read()
            except grpc.aio.AioRpcError as error:
                raise _translate(error, self.endpoint) from None
            if response is grpc.aio.EOF:
                raise EtcdCallError("unavailable", self.endpoint, "watch stream ended")
            _raise_if_compacted(response, self.endpoint)
            if response.canceled:
                reason = response.cancel_reason or "watch cancelled by etcd"
                raise EtcdCallError("unavailable", self.endpoint, reason)
            if response.events:
                return WatchBatch(
                    tuple(
                        WatchEvent(
                            "delete" if event.type == rpc.Event.DELETE else "put",
                            _kv(event.kv),
                        )
                        for event in response.events
                    )
                )

    def cancel(self) -> None:
        """Close the stream; a pending :meth:`next_batch` is cancelled."""
        self._call.cancel()


class EndpointConnection:
    """A lazily dialled channel to one etcd endpoint (``host:port``)."""

    def __init__(self, endpoint: str, config: ChannelConfig) -> None:
        self.endpoint = endpoint
        self._config = config
        self._channel: Any = None
        self._token: str | None = None
        # Invariant: once closed, never dialled again: a call still on its
        # way when the store closed must not open a channel nobody closes.
        self._closed = False

    def _ensure_channel(self) -> Any:
        if self._closed:
            raise EtcdCallError("unavailable", self.endpoint, "the store was closed")
        if self._channel is None:
            if self._config.tls:
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=self._config.ca,
                    private_key=self._config.key,
                    certificate_chain=self._config.cert,
                )
                self._channel = grpc.aio.secure_channel(
                    self.endpoint, credentials, options=_CHANNEL_OPTIONS
                )
            else:
                self._channel = grpc.aio.insecure_channel(self.endpoint, options=_CHANNEL_OPTIONS)
        return self._channel

    async def _metadata(
        self, seconds: float, *, renew: bool = False
    ) -> tuple[tuple[str, str], ...]:
        if self._config.user is None:
            return ()
        if self._token is None or renew:
            stub = rpc.AuthStub(self._ensure_channel())
            request = rpc.AuthenticateRequest(
                name=self._config.user, password=self._config.password or ""
            )
            response = await stub.Authenticate(request, timeout=seconds)
            self._token = str(response.token)
        return (("token", self._token),)

    def _fail(self, error: BaseException) -> EtcdCallError:
        """Translate ``error``; a rejected auth token is dropped and reported
        as retryable, so the next attempt authenticates afresh."""
        failure = _translate(error, self.endpoint)
        if failure.kind == "auth" and "token" in failure.detail and self._token is not None:
            self._token = None
            return EtcdCallError("unavailable", self.endpoint, failure.detail)
        return failure

    async def _unary(self, stub_class: Any, method: str, request: Any, seconds: float) -> Any:
        """Call one unary method, renewing an expired auth token once."""
        for attempt in range(2):
            try:
                async with asyncio.timeout(seconds):
                    metadata = await self._metadata(seconds, renew=attempt > 0)
                    stub = stub_class(self._ensure_channel())
                    return await getattr(stub, method)(request, timeout=seconds, metadata=metadata)
            except Exception as error:
                failure = _translate(error, self.endpoint)
                if failure.kind == "auth" and "token" in failure.detail and attempt == 0:
                    continue
                raise failure from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def range_prefix(
        self, prefix: bytes, seconds: float, *, exact: bool = False
    ) -> tuple[list[KeyValue], int]:
        """Read every key under ``prefix`` (``exact``: that key only); return
        them and the header revision."""
        end = b"" if exact else prefix_end(prefix)
        request = rpc.RangeRequest(key=prefix, range_end=end)
        response = await self._unary(rpc.KVStub, "Range", request, seconds)
        return [_kv(kv) for kv in response.kvs], int(response.header.revision)

    async def range_pages(
        self, prefix: bytes, page: int, seconds: float
    ) -> AsyncIterator[tuple[list[KeyValue], int]]:
        """Every key under ``prefix``, ``page`` keys per request, each page
        with the revision they are all read at (the first page's): no one
        response, nor its decoding, holds the event loop for long."""
        start, end, revision = prefix, prefix_end(prefix), 0
        while True:
            request = rpc.RangeRequest(key=start, range_end=end, limit=page, revision=revision)
            response = await self._unary(rpc.KVStub, "Range", request, seconds)
            revision = revision or int(response.header.revision)
            yield [_kv(kv) for kv in response.kvs], revision
            if not response.more or not response.kvs:
                return
            start = bytes(response.kvs[-1].key) + b"\0"

    async def range_newest(self, prefix: bytes, limit: int, seconds: float) -> list[KeyValue]:
        """The ``limit`` greatest keys under ``prefix``, greatest first."""
        request = rpc.RangeRequest(
            key=prefix, range_end=prefix_end(prefix), limit=limit,
            sort_order=rpc.RangeRequest.DESCEND, sort_target=rpc.RangeRequest.KEY,
        )
        response = await self._unary(rpc.KVStub, "Range", request, seconds)
        return [_kv(kv) for kv in response.kvs]

    async def txn(
        self, compare: Sequence[Any], success: Sequence[Any], failure: Sequence[Any], seconds: float
    ) -> tuple[bool, int, list[KeyValue]]:
        """Run a transaction.

        Returns:
            Whether the comparisons held, the revision after it, and the keys
            read by range operations of the branch that ran.
        """
        request = rpc.TxnRequest(
            compare=list(compare), success=list(success), failure=list(failure)
        )
        response = await self._unary(rpc.KVStub, "Txn", request, seconds)
        read = [
            _kv(kv)
            for op in response.responses
            if op.WhichOneof("response") == "response_range"
            for kv in op.response_range.kvs
        ]
        return bool(response.succeeded), int(response.header.revision), read

    async def lease_grant(self, ttl: int, seconds: float) -> tuple[int, int]:
        """Grant a lease; return its id and the TTL etcd granted."""
        request = rpc.LeaseGrantRequest(TTL=ttl, ID=0)
        response = await self._unary(rpc.LeaseStub, "LeaseGrant", request, seconds)
        if response.error:
            raise EtcdCallError("failed", self.endpoint, str(response.error))
        return int(response.ID), int(response.TTL)

    async def lease_revoke(self, lease: int, seconds: float) -> None:
        """Revoke a lease; its keys vanish at one revision."""
        await self._unary(rpc.LeaseStub, "LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease), seconds)

    async def lease_keepalive(self, lease: int, seconds: float) -> int:
        """Refresh a lease once; return its new TTL (``<= 0``: the lease is gone)."""
        call = None
        try:
            async with asyncio.timeout(seconds):
                metadata = await self._metadata(seconds)
                stub = rpc.LeaseStub(self._ensure_channel())
                call = stub.LeaseKeepAlive(timeout=seconds, metadata=metadata)
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease))
                response = await call.read()
        except Exception as error:
            raise self._fail(error) from None
        finally:
            if call is not None:
                call.cancel()
        if response is grpc.aio.EOF:
            raise EtcdCallError("unavailable", self.endpoint, "keepalive stream ended")
        return int(response.TTL)

    async def lease_time_to_live(self, lease: int, seconds: float) -> int:
        """Read a lease's remaining TTL without refreshing it (``-1``: gone)."""
        request = rpc.LeaseTimeToLiveRequest(ID=lease, keys=False)
        response = await self._unary(rpc.LeaseStub, "LeaseTimeToLive", request, seconds)
        return int(response.TTL)

    async def compact(self, revision: int, seconds: float, *, physical: bool = True) -> None:
        """Discard history below ``revision``; with ``physical``, answer only once
        the space is free for reuse in etcd's database (else once it is decided)."""
        request = rpc.CompactionRequest(revision=revision, physical=physical)
        await self._unary(rpc.KVStub, "Compact", request, seconds)

    async def open_watch(self, prefix: bytes, start_revision: int, seconds: float) -> WatchStream:
        """Open a watch on every key under ``prefix`` from ``start_revision``.

        The stream asks etcd to cancel it when this member loses its leader
        (``hasleader``), so a member cut off from the cluster cannot keep a
        watcher silently stale. It does not ask for previous values
        (``prev_kv``): etcd would run a read transaction per event and watcher.

        Raises:
            EtcdCallError: the endpoint did not confirm the watch in time, or
                refused it.
        """
        call = None
        try:
            async with asyncio.timeout(seconds):
                metadata = (*await self._metadata(seconds), ("hasleader", "true"))
                stub = rpc.WatchStub(self._ensure_channel())
                call = stub.Watch(metadata=metadata)
                create = rpc.WatchCreateRequest(
                    key=prefix,
                    range_end=prefix_end(prefix),
                    start_revision=start_revision,
                )
                await call.write(rpc.WatchRequest(create_request=create))
                response = await call.read()
            if response is grpc.aio.EOF or not response.created:
                raise EtcdCallError("unavailable", self.endpoint, "watch was not created")
            _raise_if_compacted(response, self.endpoint)
            if response.canceled:
                raise EtcdCallError("failed", self.endpoint, response.cancel_reason or "refused")
        except BaseException as error:
            if call is not None:
                call.cancel()
            if isinstance(error, Exception):
                raise self._fail(error) from None
            raise
        return WatchStream(call, self.endpoint)

    async def close(self) -> None:
        """Close the channel for good; open streams on it end."""
        self._closed = True
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()


def _raise_if_compacted(response: Any, endpoint: str) -> None:
    """A watch response saying the asked-for revisions are gone: Resync."""
    if response.compact_revision:
        raise EtcdCallError(
            "compacted",
            endpoint,
            f"revisions below {response.compact_revision} were compacted",
            int(response.compact_revision),
        )
