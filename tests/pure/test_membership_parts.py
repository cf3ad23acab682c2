"""A group's parts across their packed limit: a part of up to 256 joins is
packed in bytes, a larger one kept in arrays (``membership/_group.py``,
Rule 3). Joins, leaves and a node's removal across that limit, with two
incarnations of a node in one group, keep every member and every flat
position right; checked against a plain count of joins."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shoal.membership._group import SMALL, Group
from shoal.pid import Pid


def _check(group: Group, model: Counter[Pid]) -> set[bool]:
    """Which forms the parts took: True for packed, False for arrays."""
    forms = set()
    assert Counter(group.view()) == model
    assert Counter(group.pids()) == model
    for node in {p.node for p in model}:
        assert group.pids_of(node) == sorted(p for p in model.elements() if p.node == node)
    flat = list(group.view())
    for node, creation in {(p.node, p.creation) for p in model}:
        slot = group.find(node, creation)
        held = list(memoryview(group.held[slot]).cast("q")) if isinstance(
            group.held[slot], bytes) else list(group.held[slot])
        assert held == sorted(held) and len(held) == sum(
            n for p, n in model.items() if (p.node, p.creation) == (node, creation))
        assert isinstance(group.held[slot], bytes) == (len(held) <= SMALL)
        forms.add(len(held) <= SMALL)
        ats = group.ats[slot]
        at = list(memoryview(ats).cast("q")) if isinstance(ats, bytes) else list(ats)
        assert sorted(at) == sorted(set(at))  # each flat entry once
        assert all(flat[j] == Pid(node, creation, s) for s, j in zip(held, at, strict=True))
    return forms


@pytest.mark.parametrize("seed", range(6))
def test_parts_crossing_the_packed_limit_keep_every_join(seed: int) -> None:
    rng = random.Random(seed)
    group, model = Group(("s", "g")), Counter[Pid]()
    incarnations = [("a", 1), ("a", 2), ("b", 1), ("c", 7)]
    forms: set[bool] = set()
    for _ in range(60):
        node, creation = rng.choice(incarnations)
        action = rng.random()
        if action < 0.5:  # a batch, some serials already held, crossing the limit
            pids = [Pid(node, creation, rng.randrange(1, 700))
                    for _ in range(rng.choice((1, 3, 64, 200)))]
            group.add(pids, "local")
            model.update(pids)
        elif action < 0.9:  # leaves, most of them of held pids
            held = [p for p in model if p.node == node and p.creation == creation]
            for pid in rng.sample(held, min(len(held), rng.choice((1, 40, 150)))):
                assert group.remove(pid)
                model[pid] -= 1
                if not model[pid]:
                    del model[pid]
            assert not group.remove(Pid(node, creation, 10_000))
        else:  # the node's whole part, every incarnation
            gone = group.drop_node(node)
            assert gone == sorted(p for p in model.elements() if p.node == node)
            for pid in {p for p in model if p.node == node}:
                del model[pid]
        forms |= _check(group, model)
    assert forms == {True, False}  # both forms met, and changes across the limit
