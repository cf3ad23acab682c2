"""select(): how each strategy picks one member, with an injected rng.

Pure tests: members are plain pid lists, load is a dict lookup, and the
random source is either seeded or scripted so each pick is explained.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import BadArgument
from shoal.membership.strategies import STRATEGIES, key_digest, pid_digest, select
from shoal.pid import Pid

MEMBERS = [Pid("a", 1, n) for n in range(1, 6)]
REMOTE = [Pid("b", 2, n) for n in range(1, 4)]


class ScriptedRng(random.Random):
    """randrange returns the scripted values in turn and records each call."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = list(values)
        self.calls: list[tuple[int, int]] = []

    def randrange(self, n: int, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        value = self.values.pop(0)
        assert 0 <= value < n, (value, n)
        self.calls.append((n, value))
        return value


class RecordingRng(random.Random):
    """A seeded rng that remembers the indices it handed out."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.drawn: list[int] = []

    def randrange(self, n: int, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        value = super().randrange(n)
        self.drawn.append(value)
        return value


def _pick(strategy: str, members: list[Pid], **kwargs: object) -> Pid | None:
    kwargs.setdefault("rng", random.Random(1))
    if strategy == "hash":
        kwargs.setdefault("key_hash", key_digest("k"))
    return select(strategy, members, **kwargs)  # type: ignore[arg-type]


# -- common rules ------------------------------------------------------------------


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_empty_group_selects_nothing(strategy: str) -> None:
    assert _pick(strategy, []) is None


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_everything_excluded_selects_nothing(strategy: str) -> None:
    assert _pick(strategy, MEMBERS, local=MEMBERS, exclude=set(MEMBERS)) is None


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("seed", range(20))
def test_excluded_members_are_never_selected(strategy: str, seed: int) -> None:
    exclude = {MEMBERS[0], MEMBERS[2], REMOTE[0]}
    pick = _pick(strategy, MEMBERS + REMOTE, local=MEMBERS, exclude=exclude,
                 rng=random.Random(seed), counter=seed, key_hash=key_digest(seed),
                 load=lambda p: p.serial)
    assert pick in MEMBERS + REMOTE
    assert pick not in exclude


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_the_only_member_is_selected(strategy: str) -> None:
    assert _pick(strategy, [REMOTE[1]], load=lambda p: 9) == REMOTE[1]


@pytest.mark.parametrize("members", [[], MEMBERS], ids=["empty", "members"])
@pytest.mark.parametrize("strategy", ["", "least-loaded", "RANDOM", "closest", ["random"], None])
def test_unknown_strategy_is_a_bad_argument(strategy: str, members: list[Pid]) -> None:
    with pytest.raises(BadArgument) as info:
        select(strategy, members)
    assert info.value.argument == "strategy"


@pytest.mark.parametrize("members", [[], MEMBERS], ids=["empty", "members"])
def test_hash_without_a_key_is_a_bad_argument(members: list[Pid]) -> None:
    with pytest.raises(BadArgument) as info:
        select("hash", members)
    assert info.value.argument == "key"


@pytest.mark.parametrize("key", [object(), {1, 2}, 2**70, b"x".decode and (lambda: 0)],
                         ids=["object", "set", "huge-int", "function"])
def test_a_key_that_cannot_be_encoded_is_a_bad_argument(key: object) -> None:
    with pytest.raises(BadArgument) as info:
        key_digest(key)
    assert info.value.argument == "key"


# -- random, round_robin, local_first ---------------------------------------------


def test_random_is_uniform_over_joins() -> None:
    a, b = MEMBERS[:2]
    rng = random.Random(3)
    picks = Counter(select("random", [a, a, a, b], rng=rng) for _ in range(4000))
    assert set(picks) == {a, b}
    assert 2700 < picks[a] < 3300


def test_round_robin_walks_the_members_in_order() -> None:
    picks = [select("round_robin", MEMBERS, counter=c) for c in range(1, 11)]
    assert picks == [MEMBERS[c % 5] for c in range(1, 11)]
    assert Counter(picks) == Counter({p: 2 for p in MEMBERS})


class CountedMembers(list[Pid]):
    """A member list that counts the members read (the table hands out a
    view that builds a Pid per read)."""

    reads = 0

    def __getitem__(self, index):  # type: ignore[no-untyped-def,override]
        self.reads += 1
        return super().__getitem__(index)

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(len(self)):
            yield self[i]


@pytest.mark.parametrize("strategy", ["random", "round_robin", "least_loaded", "local_first"])
def test_a_pick_that_misses_the_excluded_reads_two_members_at_most(strategy: str) -> None:
    # A group call's retry excludes the members it tried: on a large group
    # the pick must not read (build) every member when it misses them.
    members = CountedMembers(Pid("big", 1, n) for n in range(10_000))
    tried = {Pid("big", 1, 9_999)}  # neither the counters nor these seeded draws hit it
    rng = random.Random(3)
    for counter in range(50):
        members.reads = 0
        pick = select(strategy, members, exclude=tried, rng=rng, counter=counter,
                      load=lambda p: p.serial % 3)
        assert pick is not None and pick not in tried
        assert members.reads <= 2


@pytest.mark.parametrize("strategy", ["random", "least_loaded", "local_first"])
def test_picks_with_exclude_are_uniform_over_the_members_left(strategy: str) -> None:
    # The cheap pick is redrawn from the filtered list when it hits an
    # excluded member: no member left is favoured for neighbouring one.
    members = [Pid("u", 1, n) for n in range(6)]
    exclude = set(members[:3])
    rng = random.Random(11)
    picks = Counter(select(strategy, members, exclude=exclude, rng=rng, load=lambda p: 0)
                    for _ in range(6_000))
    assert set(picks) == set(members[3:])
    for member in members[3:]:
        # 2,000 expected each; bounds over six standard deviations (~36.5) away.
        assert 1_780 <= picks[member] <= 2_220


def test_round_robin_skips_excluded_members() -> None:
    exclude = {MEMBERS[1]}
    picks = {select("round_robin", MEMBERS, counter=c, exclude=exclude) for c in range(20)}
    assert picks == set(MEMBERS) - exclude


def test_local_first_picks_a_local_member_whenever_there_is_one() -> None:
    rng = random.Random(5)
    picks = Counter(select("local_first", REMOTE + MEMBERS[:2], local=MEMBERS[:2], rng=rng)
                    for _ in range(500))
    assert set(picks) == set(MEMBERS[:2])


def test_local_first_falls_back_to_any_member() -> None:
    rng = random.Random(5)
    picks = {select("local_first", REMOTE, local=[], rng=rng) for _ in range(200)}
    assert picks == set(REMOTE)


def test_local_first_falls_back_when_local_members_are_excluded() -> None:
    rng = random.Random(5)
    local = MEMBERS[:1]
    picks = {select("local_first", REMOTE + local, local=local, exclude=set(local), rng=rng)
             for _ in range(200)}
    assert picks == set(REMOTE)


# -- least_loaded: power of two choices ----------------------------------------------

LOADS = {p: load for p, load in zip(MEMBERS, [5, 1, 9, 1, 0], strict=True)}


@pytest.mark.parametrize(
    ("draws", "expected"),
    [
        ([0, 1], MEMBERS[1]),  # 5 vs 1
        ([1, 0], MEMBERS[1]),  # 1 vs 5
        ([2, 2], MEMBERS[2]),  # the same member twice: it wins, however loaded
        ([2, 4], MEMBERS[4]),  # 9 vs 0
        ([1, 3], MEMBERS[1]),  # a tie keeps the first sampled
        ([3, 1], MEMBERS[3]),
    ],
)
def test_least_loaded_takes_the_lighter_of_two_sampled(draws: list[int],
                                                       expected: Pid) -> None:
    rng = ScriptedRng(draws)
    assert select("least_loaded", MEMBERS, load=LOADS.__getitem__, rng=rng) == expected
    assert rng.calls == [(5, draws[0]), (5, draws[1])]


def test_least_loaded_never_picks_the_heavier_of_the_two_sampled() -> None:
    loads = {p: (p.serial * 7919) % 13 for p in MEMBERS + REMOTE}
    members = MEMBERS + REMOTE
    rng = RecordingRng(11)
    for _ in range(2000):
        rng.drawn.clear()
        pick = select("least_loaded", members, load=loads.__getitem__, rng=rng)
        a, b = (members[i] for i in rng.drawn)
        assert pick in (a, b)
        assert loads[pick] == min(loads[a], loads[b])


def test_least_loaded_does_not_scan_for_the_minimum() -> None:
    # One heavily loaded member among many is still picked now and then
    # (when it is sampled against itself), and every lightly loaded member
    # gets picks: no herd onto a single global minimum.
    members = [Pid("a", 1, n) for n in range(10)]
    heavy = members[0]
    loads = {p: 1 for p in members} | {heavy: 1000}
    loads[members[5]] = 0  # a unique global minimum
    rng = RecordingRng(2)
    picks: Counter[Pid] = Counter()
    for _ in range(10_000):
        rng.drawn.clear()
        pick = select("least_loaded", members, load=loads.__getitem__, rng=rng)
        picks[pick] += 1
        if pick == heavy:
            assert rng.drawn == [0, 0]
    assert 0 < picks[heavy] < 300  # about 1 in 100
    assert set(picks) == set(members)
    assert picks[members[5]] < 5000


def test_least_loaded_without_a_load_function_takes_one_random_member() -> None:
    rng = ScriptedRng([3])
    assert select("least_loaded", MEMBERS, rng=rng) == MEMBERS[3]


# -- hash: rendezvous hashing ----------------------------------------------------------


def test_digests_are_stable_values() -> None:
    # Pinned: every node, every Python process and every release must map a
    # key to the same member, or a rolling deploy moves keys.
    assert key_digest("user-42") == 0x04CED5A4CEBB7FCB
    assert key_digest(42) == 0xA36F65E93E48006E
    assert key_digest(["a", 1]) == 0x2E4BD019EEFEFEE4
    assert pid_digest(Pid("api-1", 1700000000000000, 7)) == 0x65A5821DC56FA5C4


def test_the_same_key_picks_the_same_member_in_another_process() -> None:
    members = [Pid(f"n{i % 3}", 100 + i, i) for i in range(12)]
    keys = [f"user-{i}" for i in range(50)] + list(range(50))
    here = [select("hash", members, key_hash=key_digest(k)) for k in keys]
    script = textwrap.dedent(
        f"""
        from shoal.membership.strategies import key_digest, select
        from shoal.pid import Pid
        members = {members!r}
        keys = {keys!r}
        print([tuple(select("hash", members, key_hash=key_digest(k))) for k in keys])
        """
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
            check=True, env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        assert out.strip() == repr([tuple(p) for p in here])  # type: ignore[arg-type]


def test_the_same_key_picks_the_same_member_whatever_the_member_order() -> None:
    members = MEMBERS + REMOTE
    for key in range(100):
        digest = key_digest(key)
        first = select("hash", members, key_hash=digest)
        assert select("hash", list(reversed(members)), key_hash=digest) == first
        assert select("hash", members + members, key_hash=digest) == first


def test_keys_spread_over_every_member() -> None:
    members = MEMBERS + REMOTE
    picks = Counter(select("hash", members, key_hash=key_digest(k)) for k in range(4000))
    assert set(picks) == set(members)
    assert min(picks.values()) > 4000 / len(members) / 2


pid_lists = st.lists(
    st.builds(Pid, st.sampled_from(["a", "b", "c"]), st.integers(1, 3), st.integers(1, 40)),
    min_size=1, max_size=12, unique=True,
)
key_lists = st.lists(st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**64 - 1)),
                     min_size=1, max_size=20)


def _hash_picks(members: list[Pid], keys: list[object]) -> dict[object, Pid | None]:
    return {k: select("hash", members, key_hash=key_digest(k)) for k in keys}


@settings(max_examples=150, deadline=None)
@given(members=pid_lists, keys=key_lists, data=st.data())
def test_removing_other_members_never_moves_a_key(
    members: list[Pid], keys: list[object], data: st.DataObject,
) -> None:
    before = _hash_picks(members, keys)
    removed = set(data.draw(st.lists(st.sampled_from(members), max_size=len(members) - 1)))
    remaining = [p for p in members if p not in removed]
    after = _hash_picks(remaining, keys)
    for key, pick in before.items():
        if pick not in removed:
            assert after[key] == pick
        else:
            assert after[key] in remaining


@settings(max_examples=150, deadline=None)
@given(members=pid_lists, keys=key_lists,
       new=st.builds(Pid, st.just("d"), st.integers(1, 3), st.integers(1, 40)))
def test_adding_a_member_moves_only_keys_that_go_to_it(
    members: list[Pid], keys: list[object], new: Pid,
) -> None:
    before = _hash_picks(members, keys)
    after = _hash_picks([*members, new], keys)
    for key in keys:
        assert after[key] in (before[key], new)


def test_the_hash_strategys_digests_keep_no_pid_alive() -> None:
    # Hashing over a large group caches a digest per member: the cache must
    # not hold the pids (objects the garbage collector tracks and walks).
    def alive() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is Pid and o.node == "digest-node")

    pids = [Pid("digest-node", 5, n) for n in range(5_000)]
    assert alive() == 5_000
    assert select("hash", pids, key_hash=key_digest("k")) in pids
    del pids
    gc.collect()
    assert alive() == 0


@settings(max_examples=150, deadline=None)
@given(members=pid_lists, keys=key_lists, data=st.data())
def test_hash_with_exclude_equals_hash_over_the_rest(
    members: list[Pid], keys: list[object], data: st.DataObject,
) -> None:
    exclude = set(data.draw(st.lists(st.sampled_from(members))))
    rest = [p for p in members if p not in exclude]
    for key in keys:
        digest = key_digest(key)
        assert (select("hash", members, key_hash=digest, exclude=exclude)
                == select("hash", rest, key_hash=digest))


@settings(max_examples=150, deadline=None)
@given(members=pid_lists, strategy=st.sampled_from(sorted(STRATEGIES)),
       seed=st.integers(0, 2**32), counter=st.integers(0, 10**6), data=st.data())
def test_every_strategy_picks_a_member_not_excluded(
    members: list[Pid], strategy: str, seed: int, counter: int, data: st.DataObject,
) -> None:
    exclude = set(data.draw(st.lists(st.sampled_from(members))))
    local = [p for p in members if p.node == "a"]
    load: Callable[[Pid], int] = lambda p: (p.serial * 31 + seed) % 7  # noqa: E731
    pick = select(strategy, members, local=local, load=load, counter=counter,
                  key_hash=key_digest(seed), exclude=exclude, rng=random.Random(seed))
    if set(members) <= exclude:
        assert pick is None
    else:
        assert pick in members and pick not in exclude
