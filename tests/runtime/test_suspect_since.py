"""ClusterView.suspected(): how long each node has been unroutable, as the
admin ``ping`` reports it for ``shoal members --live``; forgotten when the
node is routable again or gone."""

from __future__ import annotations

from shoal.membership.table import GroupTable
from shoal.runtime.cluster import ClusterView


def test_suspicion_is_timed_from_its_start_and_forgotten_when_it_ends() -> None:
    view = ClusterView(GroupTable("me"))
    assert view.suspected() == {}
    view.set_routable("n2", False)
    first = view.suspected()["n2"]
    view.set_routable("n2", False)  # still the same suspicion: its start is kept
    assert view.suspected()["n2"] >= first >= 0
    view.set_routable("n3", False)
    view.set_routable("n2", True)
    assert set(view.suspected()) == {"n3"}
    view.gone("n3")
    assert view.suspected() == {}
