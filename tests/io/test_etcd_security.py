"""EtcdStore with etcd's security on: TLS with client certificates, and
user/password authentication. Each test starts its own throwaway etcd."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from shoal.errors import StoreUnavailable
from shoal.store.base import Put
from shoal.store.etcd import EtcdStore
from shoal.testing.etcd_server import make_tls_files, start_etcd


async def _round_trip(store: EtcdStore) -> None:
    session = await store.open_session("secure", b"info", 2.0)
    start = await store.snapshot("")
    watch = store.watch("", start.revision)
    revision = await session.apply([Put(key="k", value=b"v")])
    item = await anext(watch)
    assert item.revision == revision  # type: ignore[union-attr]
    await watch.aclose()  # type: ignore[attr-defined]
    await session.close()


async def test_tls_with_client_certificate_from_url(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "pki")
    with start_etcd(tls=files, base_dir=tmp_path / "etcd") as etcd:
        url = (
            f"etcd://{etcd.endpoint}?cluster=tls-{uuid.uuid4().hex[:8]}"
            f"&ca={files.ca}&cert={files.client_cert}&key={files.client_key}"
        )
        store = EtcdStore.from_url(url)
        try:
            await _round_trip(store)
        finally:
            await store.close()
        plaintext = EtcdStore(etcd.endpoints, timeout=1.0, attempt_timeout=0.5)
        try:
            with pytest.raises(StoreUnavailable, match=etcd.endpoint):
                await plaintext.snapshot("")
        finally:
            await plaintext.close()


async def test_user_and_password_authenticate_and_a_wrong_password_is_named() -> None:
    with start_etcd() as etcd:

        def etcdctl(*args: str) -> None:
            subprocess.run(
                ["etcdctl", f"--endpoints={etcd.endpoint}", *args],
                check=True,
                capture_output=True,
                timeout=30,
                env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
            )

        etcdctl("user", "add", "root", "--new-user-password=s3cret")
        etcdctl("user", "grant-role", "root", "root")
        etcdctl("auth", "enable")
        store = EtcdStore(etcd.endpoints, cluster="auth", user="root", password="s3cret")
        try:
            await _round_trip(store)
        finally:
            await store.close()
        wrong = EtcdStore(etcd.endpoints, user="root", password="nope", timeout=2.0)
        try:
            with pytest.raises(StoreUnavailable, match="user/password"):
                await wrong.snapshot("")
        finally:
            await wrong.close()
