"""The cluster every client test runs against: ``gateway_cluster``.

Two node processes (``shoal.testing.LocalCluster``, SQLite store) running
``tests/clients/app.py`` (groups ``echo``, ``crash``, ``slow``; one member
per node), each serving the gateway on a free 127.0.0.1 port. Client tests
use only this fixture: its ``urls``, its ``token``, and its
``python_caller()`` (an in-process node of the same cluster, for steady
Python callers and membership checks).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shoal
from shoal.gateway.context import derive_token
from shoal.testing import LocalCluster, wait_until

ROOT = Path(__file__).resolve().parents[2]
GROUPS = ("echo", "crash", "slow")


class GatewayCluster:
    """What a client test gets (see the module header)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.urls = [f"http://{host}:{port}" for host, port in
                     (cluster.nodes[name].http or ("", 0) for name in cluster.names)]
        self.token = derive_token(cluster.secret.encode())

    def python_caller(self) -> shoal.Node:
        """The in-process node of the cluster (its ``groups`` call and read
        the same groups the clients do)."""
        return self.cluster.client

    def env(self, url: str | None = None) -> dict[str, str]:
        """An environment for a client's test program: ``SHOAL_GATEWAY_URL``
        (the first node's, unless given) and ``SHOAL_GATEWAY_TOKEN``."""
        return dict(os.environ, SHOAL_GATEWAY_URL=url or self.urls[0],
                    SHOAL_GATEWAY_TOKEN=self.token)


@pytest.fixture
async def gateway_cluster() -> AsyncIterator[GatewayCluster]:
    """A 2-node cluster of ``tests/clients/app.py`` with the gateway on
    every node, once every node sees both members of every group."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    async with LocalCluster(2, app="tests.clients.app:setup", http=True, env=env) as cluster:
        groups = cluster.client.groups
        await wait_until(lambda: all(len(groups.get_members(g)) == 2 for g in GROUPS),
                         timeout=15.0, what="both members of every group")
        yield GatewayCluster(cluster)
