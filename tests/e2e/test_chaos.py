"""The chaos suite: seeded schedules of faults under load, checked for G2..G6.

Each run starts a fresh 3-node ``LocalCluster`` of the sample service
(``shoal.testing.sample``), drives 8 callers' idempotent group calls, plays
the faults its seed names (``shoal.testing.scenario``: every kind of the
case at least once, in a seeded order, on seeded nodes) and asserts the
invariant checker found no violation. A failure prints the seed, the
figures, each fault and each violation with the timeline around it;
replay one with ``shoal chaos --seed N --faults ...``.

The seeds together cover every fault kind on the embedded store; the
replaced-while-hung fault needs a store whose sessions expire, so its case
runs on etcd (the suite's throwaway etcd server, as ``E2E_STORES`` tests do).
"""

from __future__ import annotations

import re

import pytest

from shoal.testing.scenario import FAULT_KINDS, ChaosResult, plan_schedule, run_chaos

pytestmark = pytest.mark.timeout(150)

# (seed, fault kinds, seconds of faults): each a few seconds to ~40 s.
SQLITE_CASES = [
    (1, "kill,crash,reap", 4.0),
    (2, "hang,partition", 8.0),
    (3, "store,restart,crash", 6.0),
    (4, "deploy,reap,kill", 6.0),
    (5, "kill,hang,partition,store,restart,deploy,reap,crash", 20.0),
]
ETCD_CASES = [
    (6, "replace,hang,restart,kill", 6.0),
]


def _explain(result: ChaosResult) -> str:
    return "\n".join([result.summary(), *(record.line() for record in result.faults)])


def test_the_cases_cover_every_fault_kind() -> None:
    covered = {kind for _, kinds, _ in SQLITE_CASES + ETCD_CASES for kind in kinds.split(",")}
    assert covered == set(FAULT_KINDS)


def test_a_schedule_is_named_by_its_seed() -> None:
    names = ["n1", "n2", "n3"]
    first = plan_schedule(7, 30, FAULT_KINDS, names)
    assert plan_schedule(7, 30, FAULT_KINDS, names) == first
    assert plan_schedule(8, 30, FAULT_KINDS, names) != first
    assert {p.kind for p in first[:len(FAULT_KINDS)]} == set(FAULT_KINDS)  # a round: each once


async def _chaos(seed: int, kinds: str, duration: float) -> ChaosResult:
    result = await run_chaos(seed=seed, duration=duration, faults=kinds.split(","))
    assert result.ok, _explain(result)
    assert {p.kind for p in result.schedule} == set(kinds.split(","))
    assert not [r for r in result.faults if r.detail.startswith("skipped")], _explain(result)
    assert result.load.ok > 100 and result.load.failed == 0, _explain(result)
    return result


@pytest.mark.parametrize(("seed", "kinds", "duration"), SQLITE_CASES,
                         ids=[f"seed{s}-{k}" for s, k, _ in SQLITE_CASES])
async def test_a_seeded_schedule_of_faults_breaks_no_guarantee(
        seed: int, kinds: str, duration: float) -> None:
    result = await _chaos(seed, kinds, duration)
    reaped = [r for r in result.faults if r.kind == "reap"]
    assert all(r.detail.startswith("nothing to reap") for r in reaped), _explain(result)
    for record in (r for r in result.faults if r.kind == "deploy"):  # G4 checked, not vacuous
        match = re.search(r"(\d+) of (\d+) worker", record.detail)
        assert match is not None, record.detail
        ran, total = map(int, match.groups())
        assert ran == total > 0, _explain(result)


@pytest.mark.e2e_stores("etcd")
@pytest.mark.parametrize(("seed", "kinds", "duration"), ETCD_CASES,
                         ids=[f"seed{s}-{k}" for s, k, _ in ETCD_CASES])
async def test_a_node_replaced_while_hung_breaks_no_guarantee(
        seed: int, kinds: str, duration: float) -> None:
    result = await _chaos(seed, kinds, duration)
    replaced = [r for r in result.faults if r.kind == "replace_hung"]
    assert replaced and all("exited 3" in r.detail for r in replaced), _explain(result)
    # (exit 3: the hung incarnation fenced itself when it woke)
