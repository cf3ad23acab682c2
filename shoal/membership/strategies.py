"""Member selection strategies: pick one pid from a group's routable members.

Pure: no IO. Every strategy takes the routable members (already filtered by
the table) and returns one of them in O(1), except ``hash``, which is
rendezvous hashing and so looks at every member once (O(n) in the group's
size; keep hashed groups to hundreds of members, not tens of thousands).

- ``random``: uniform over joins (a pid joined twice is twice as likely).
- ``round_robin``: a per-group counter on the selecting node.
- ``local_first``: a random local member if there is one, else a random
  member (pg2's ``get_closest_pid``).
- ``least_loaded``: power of two choices: two random members, the one with
  the lower load wins. Load is this node's in-flight calls to the member plus
  the queue length the member last reported. It never scans the group for a
  minimum: every caller would herd onto the same member. The two are drawn
  with replacement, on purpose: a member's reported queue length changes
  only when it answers, so a member once reported busy must still be picked
  now and then (when drawn twice, 1 in n² picks) to report that it is idle
  again; two distinct draws would starve it for good. The price: in a
  two-member group the busier one still gets at least a quarter of the calls.
- ``hash``: rendezvous (highest random weight) hashing of a key: a key stays
  on its member while other members come and go, and every node picks the
  same member for the same key (the hash is stable across processes).

``exclude`` lets a group call skip members it already tried; strategies
fall back to a filtered list only when the cheap pick hits an excluded pid.
"""

from __future__ import annotations

import hashlib
import random as _random
from collections.abc import Callable, Collection, Sequence
from typing import Any

import msgpack

from shoal.errors import BadArgument
from shoal.pid import Pid

__all__ = ["STRATEGIES", "key_digest", "pid_digest", "select"]

STRATEGIES = frozenset({"local_first", "random", "round_robin", "least_loaded", "hash"})

_MASK = (1 << 64) - 1
# Keyed by plain (node, creation, serial) tuples, equal to and hashed as the
# pids: the collector untracks those, where a Pid (a tuple subclass) stays
# tracked, so a cache of many digests costs no collection time. Cleared past
# a million entries.
_pid_digests: dict[tuple[str, int, int], int] = {}


def pid_digest(pid: Pid) -> int:
    """A 64-bit hash of a pid that is the same in every process."""
    digest = _pid_digests.get(pid)
    if digest is None:
        raw = f"{pid.node}\x00{pid.creation}\x00{pid.serial}".encode()
        digest = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")
        if len(_pid_digests) > 1_000_000:
            _pid_digests.clear()
        _pid_digests[(pid[0], pid[1], pid[2])] = digest
    return digest


def key_digest(key: Any) -> int:
    """A 64-bit hash of a routing key that is the same in every process.

    Raises:
        BadArgument: the key cannot be encoded (only msgpack-able values —
            str, bytes, int, float, bool, None, lists and dicts of them — are keys).
    """
    try:
        raw = msgpack.packb(key, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadArgument("key", key, f"a msgpack-encodable value ({exc})") from None
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def _mix(x: int) -> int:
    # splitmix64 finaliser: spreads (member ^ key) into a uniform weight.
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def select(
    strategy: str,
    members: Sequence[Pid],
    *,
    local: Sequence[Pid] = (),
    load: Callable[[Pid], int] | None = None,
    counter: int = 0,
    key_hash: int | None = None,
    exclude: Collection[Pid] = (),
    rng: _random.Random | None = None,
) -> Pid | None:
    """Pick one member, or ``None`` when no member is left to pick.

    Args:
        strategy: one of :data:`STRATEGIES`.
        members: the routable members (once per join).
        local: the routable local members, for ``local_first``.
        load: load of a member, for ``least_loaded``.
        counter: a rising per-group counter, for ``round_robin``.
        key_hash: :func:`key_digest` of the key, for ``hash``.
        exclude: members not to pick (already tried).
        rng: the random source (injected for tests).

    Raises:
        BadArgument: unknown strategy, or ``hash`` without a key hash.
    """
    # Check arguments before anything else: an unknown strategy or a missing
    # hash key must fail even while the group is empty, not only once it
    # gets members (a typo would otherwise surface in production first).
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise BadArgument("strategy", strategy, f"one of {sorted(STRATEGIES)}")
    if strategy == "hash" and key_hash is None:
        raise BadArgument("key", None, "a routing key when strategy='hash'")
    rand = rng or _random
    if strategy == "hash":
        assert key_hash is not None
        best: Pid | None = None
        best_weight = -1
        for pid in members:
            if exclude and pid in exclude:
                continue
            weight = _mix(pid_digest(pid) ^ key_hash)
            if weight > best_weight or (weight == best_weight and best is not None
                                        and pid < best):
                best, best_weight = pid, weight
        return best
    if not members:
        return None
    picked = _pick(strategy, members, local, load, counter, rand, exclude)
    if picked is not None:
        return picked
    # The cheap pick hit a member already tried: pick again among the others
    # (building the filtered lists only now keeps every draw uniform over
    # the members not excluded, and a group call's first attempt O(1)).
    others = [p for p in members if p not in exclude]
    if not others:
        return None
    return _pick(strategy, others, [p for p in local if p not in exclude], load, counter, rand,
                 ())


def _pick(strategy: str, members: Sequence[Pid], local: Sequence[Pid],
          load: Callable[[Pid], int] | None, counter: int, rand: Any,
          exclude: Collection[Pid]) -> Pid | None:
    """One of ``members`` (not empty) by ``strategy`` (not ``hash``), or
    ``None`` if a member it drew is in ``exclude``."""
    n = len(members)
    if strategy == "random":
        a = members[rand.randrange(n)]
    elif strategy == "local_first":
        a = local[rand.randrange(len(local))] if local else members[rand.randrange(n)]
    elif strategy == "round_robin":
        a = members[counter % n]
    else:  # least_loaded
        a = members[rand.randrange(n)]
        if n > 1 and load is not None:
            b = members[rand.randrange(n)]
            if exclude and b in exclude:
                return None  # both draws must be eligible, as in the filtered list
            if load(b) < load(a):
                a = b
    return None if exclude and a in exclude else a
