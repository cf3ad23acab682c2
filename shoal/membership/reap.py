"""The reap planner: which membership entries are provably dead, as a pure function.

``shoal reap`` gathers what the store holds and what each owner answers,
then asks :func:`plan_reap` what may go. Nothing here does IO, so the rules
are tested exhaustively (a hypothesis property test): for any mix of live,
dead, suspect and other-incarnation entries, and any observer cut off from
any part of the cluster, the plan holds no live member.

Evidence of death, the only reasons an entry is planned for removal:

- ``session-ended``: the store holds no live session for the entry's
  incarnation: no node of that name is registered, or a newer incarnation
  holds the name (one live session per name: store Rule 4);
- ``other-incarnation``: the node answering under that name is another
  incarnation than the entry's;
- ``noproc``: the entry's own incarnation answered that the process is not
  alive (the owner is the authority on its processes).

Unreachable is never evidence: an entry whose owner could not be asked is
kept and listed as such. ``registered`` must come from the same consistent
store snapshot as the entries (a live incarnation's session is written
before its entries and ends with them, atomically, so in one snapshot an
entry of a live incarnation always has its registration beside it).

Guards, checked on the state *after* the change, per group:

- Rule 1: no group ends with fewer live members than it had (live: the
  owner answered "alive").
- Rule 2: when the share of a group's entries that look dead reaches
  ``max_dead_share`` (default 0.5), nothing of that group is removed: an
  observer seeing half a group dead at once is more likely cut off than the
  members dead. The group is reported as held, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from shoal.pid import Pid

__all__ = ["DEFAULT_MAX_DEAD_SHARE", "Evidence", "Held", "MemberEntry", "OwnerView",
           "ReapPlan", "Removal", "evidence_of_death", "plan_reap"]

DEFAULT_MAX_DEAD_SHARE: Final = 0.5

Evidence = Literal["session-ended", "other-incarnation", "noproc"]
PidState = Literal["alive", "noproc", "not-mine"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberEntry:
    """One membership as the store holds it (``key``: its bucket's key)."""

    scope: str
    group: str
    pid: Pid
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerView:
    """What is known of one node name.

    Attributes:
        registered: the creation of the live session the store holds for
            the name, or None when it holds none.
        answered: the creation of the node that answered under the name, or
            None when it could not be asked (unreachable, timed out).
        states: that node's word on each pid asked about.
    """

    registered: int | None
    answered: int | None
    states: Mapping[Pid, PidState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Removal:
    """One entry planned for removal, with its evidence."""

    entry: MemberEntry
    evidence: Evidence


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """A group whose dead-looking entries are kept, and why (Rule 2)."""

    scope: str
    group: str
    dead: int
    entries: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReapPlan:
    """What reap would do: ``remove``; what it keeps and why."""

    remove: list[Removal]
    unreachable: list[MemberEntry]
    held: list[Held]
    live: int

    @property
    def empty(self) -> bool:
        """Nothing to remove (on a healthy cluster: always)."""
        return not self.remove


def evidence_of_death(entry: MemberEntry, owner: OwnerView | None
                      ) -> Evidence | Literal["alive", "unknown"]:
    """The evidence that ``entry`` is dead; "alive" when its owner says so;
    "unknown" when it cannot be known (its owner could not be asked, or nothing is
    known of its node name: a caller that forgot a name removes nothing)."""
    pid = entry.pid
    if owner is None:
        return "unknown"
    if owner.registered != pid.creation:
        return "session-ended"
    if owner.answered is None:
        return "unknown"
    if owner.answered != pid.creation:
        return "other-incarnation"
    state = owner.states.get(pid)
    if state == "noproc":
        return "noproc"
    if state == "alive":
        return "alive"
    return "unknown"  # not asked, or an answer that says nothing of it


def plan_reap(entries: Iterable[MemberEntry], owners: Mapping[str, OwnerView], *,
              max_dead_share: float = DEFAULT_MAX_DEAD_SHARE) -> ReapPlan:
    """Plan a reap (see the module header for the evidence and the guards).

    Raises:
        ValueError: ``max_dead_share`` is not in (0, 1].
    """
    if not 0 < max_dead_share <= 1:
        raise ValueError(f"max_dead_share must be in (0, 1], not {max_dead_share!r}")
    by_group: dict[tuple[str, str], list[MemberEntry]] = {}
    for entry in entries:
        by_group.setdefault((entry.scope, entry.group), []).append(entry)
    remove: list[Removal] = []
    unreachable: list[MemberEntry] = []
    held: list[Held] = []
    live_total = 0
    for (scope, group), listed in sorted(by_group.items()):
        dead: list[Removal] = []
        live_before = 0
        for entry in listed:
            found = evidence_of_death(entry, owners.get(entry.pid.node))
            if found == "alive":
                live_before += 1
            elif found == "unknown":
                unreachable.append(entry)
            else:
                dead.append(Removal(entry=entry, evidence=found))
        live_total += live_before
        if not dead:
            continue
        if len(dead) >= max_dead_share * len(listed):
            held.append(Held(scope=scope, group=group, dead=len(dead), entries=len(listed),
                             reason=f"{len(dead)} of {len(listed)} entries look dead at once "
                                    f"(at least {max_dead_share:.0%}): this observer is more "
                                    "likely cut off than the members dead; nothing removed"))
            continue
        removed = {id(r.entry) for r in dead}
        live_after = sum(1 for e in listed if id(e) not in removed
                         and evidence_of_death(e, owners.get(e.pid.node)) == "alive")
        if live_after < live_before:  # Rule 1; cannot happen when evidence is sound
            held.append(Held(scope=scope, group=group, dead=len(dead), entries=len(listed),
                             reason="removing them would lower the live members; nothing "
                                    "removed"))
            continue
        remove.extend(dead)
    return ReapPlan(remove=remove, unreachable=unreachable, held=held, live=live_total)
