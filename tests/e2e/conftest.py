"""End-to-end fixtures: the store the LocalClusters of a test run against.

A module that sets ``E2E_STORES = ("sqlite", "etcd")`` runs each of its tests
once per store; others run on SQLite only. ``@pytest.mark.e2e_stores("sqlite")``
narrows one test (for behaviour that differs by store on purpose, such as how
soon a killed node's name is free again). For etcd, one throwaway etcd
serves the whole session and every test gets its own cluster name (its own
key prefix), so tests never see each other's nodes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from shoal.testing.etcd_server import EtcdCluster, start_etcd

_names = itertools.count(1)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "e2e_store" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("e2e_stores")
        stores = marker.args if marker is not None else getattr(
            metafunc.module, "E2E_STORES", ("sqlite",))
        metafunc.parametrize("e2e_store", stores, indirect=True)


@pytest.fixture(scope="session")
def session_etcd() -> Iterator[EtcdCluster]:
    with start_etcd() as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def e2e_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    kind = getattr(request, "param", "sqlite")
    if kind == "etcd":
        etcd: EtcdCluster = request.getfixturevalue("session_etcd")
        monkeypatch.setenv("SHOAL_TEST_STORE", etcd.url(f"e2e-{next(_names)}"))
    else:
        monkeypatch.delenv("SHOAL_TEST_STORE", raising=False)
    return str(kind)
