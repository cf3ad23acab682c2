"""The chaos suite: seeded schedules of faults under load, checked for G2..G6.

Each run starts a fresh 3-node ``LocalCluster`` of the sample service
(``shoal.testing.sample``), drives 8 callers' group calls, injects the
faults its seed plans (``shoal.testing.scenario``), and asserts the
checker found no violation; a failure prints the seed, the figures, each
fault and the violations with their timelines. Rerun one with
``shoal chaos --seed N --faults ...``.
"""

from __future__ import annotations

from shoal.testing.scenario import FAULT_KINDS, ChaosResult, plan_schedule, run_chaos


def _explain(result: ChaosResult) -> str:
    return "\n".join([result.summary(), *(record.line() for record in result.faults)])


def test_a_schedule_is_named_by_its_seed() -> None:
    names = ["n1", "n2", "n3"]
    first = plan_schedule(7, 30, FAULT_KINDS, names)
    assert plan_schedule(7, 30, FAULT_KINDS, names) == first
    assert plan_schedule(8, 30, FAULT_KINDS, names) != first
    assert {p.kind for p in first[:len(FAULT_KINDS)]} == set(FAULT_KINDS)  # a round: each once


async def test_kill_crash_and_reap_under_load_break_no_guarantee() -> None:
    result = await run_chaos(seed=1, duration=6.0, faults=["kill", "crash", "reap"])
    assert result.ok, _explain(result)
    assert {r.kind for r in result.faults} >= {"kill", "restart", "crash", "reap"}
    assert result.load.ok > 100 and result.load.failed == 0, _explain(result)
    reaped = [r for r in result.faults if r.kind == "reap"]
    assert all(r.detail.startswith("nothing to reap") for r in reaped), _explain(result)
