"""The story's clean-up, as a regression test on a real cluster under load.

An engineer meant to remove dead members from the groups; the filter was
inverted and removed every *live* one. With shoal's tools the same mistake
is refused: ``evict`` of every member (the inverted filter's pick) is
refused by the guard that keeps a live member, ``reap`` has no filter and
finds nothing to remove on a healthy cluster — and the callers, under
steady load from the client, see zero failures throughout.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from shoal.cli import main
from shoal.testing import LocalCluster, Timeline, check, wait_until
from shoal.testing.load import Load
from shoal.testing.scenario import SERVICE_APP


async def shell(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_an_inverted_cleanup_with_evict_or_reap_removes_no_live_member(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async with LocalCluster(["n1", "n2"], app=SERVICE_APP) as cluster:
        monkeypatch.setenv("SHOAL_SECRET", cluster.secret)
        client = cluster.client
        await wait_until(lambda: len(client.groups.get_members("service")) == 8,
                         what="eight workers")
        everyone = sorted(client.groups.get_members("service"))
        timeline = Timeline()
        load = Load(client, "service", timeline, callers=4, timeout=2.0, idempotent=False)
        load.start()
        try:
            await wait_until(lambda: load.snapshot().ok >= 200, what="the load running")
            # The inverted filter picked every member: evict refuses, changes nothing.
            assert await shell("evict", "service", *map(str, everyone), "--store",
                               cluster.store, "--yes") == 1
            assert "without a live member" in capsys.readouterr().err
            # reap takes no filter: on a live cluster it finds nothing to remove.
            assert await shell("reap", "--store", cluster.store, "--apply", "--yes",
                               "--json") == 0
            plan = json.loads(capsys.readouterr().out)
            assert plan["remove"] == [] and plan["applied"] is None
            assert sorted(client.groups.get_members("service")) == everyone
            ok_before = load.snapshot().ok
            await wait_until(lambda: load.snapshot().ok >= ok_before + 200,
                             what="calls after the clean-up")
        finally:
            stats = await load.stop()
        assert stats.failed == 0, stats.summary()
        report = check(timeline)
        assert report.ok, report.summary()
