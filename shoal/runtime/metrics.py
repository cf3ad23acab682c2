"""The ``/metrics`` families of a node: a prometheus-client custom collector.

Owns: nothing but its settings; every figure is read from the node's parts
when Prometheus scrapes (``collect``), so serving calls touches no
prometheus-client object (``counters.py`` holds the plain counters).

Families (names and labels are a public interface: ``docs/operations.md``):

- ``shoal_calls_total{kind, outcome}`` (calls made by this node),
  ``shoal_calls_served_total`` (remote calls delivered to its processes),
  ``shoal_call_duration_seconds{kind}``
  (remote and group calls only: local calls are counted, not timed,
  ``counters.py`` Rule 1);
- ``shoal_processes``, ``shoal_mailbox_messages`` (sum over processes),
  ``shoal_mailbox_max_messages``;
- ``shoal_group_members{scope, group}``, ``shoal_group_routable_members{scope,
  group}``;
- ``shoal_peers{state}``: over the nodes this node knows from the store,
  ``connected`` (an open connection, routable), ``suspect`` (an open
  connection, silent past the heartbeat timeout) and ``down`` (no
  connection and unroutable: the connection broke or a dial failed); a
  node never dialled is in none of them;
- ``shoal_store_session_up``, ``shoal_store_writes_total``,
  ``shoal_store_lag_seconds`` (seconds from sending this node's last sampled
  membership write to its watch applying it; absent before the first);
- ``shoal_restarts_total`` (supervisor restarts on this node),
  ``shoal_admin_actions_total{action}``;
- ``shoal_busy_poll_seconds_total`` (time the loop polled instead of
  sleeping, ``spin.py``), ``shoal_busy_poll_pauses_total`` (pauses for
  contention).

Bounds: the group families list the ``top_groups`` largest groups by
members (ties by scope and name); every other group is summed into one
series per scope with ``group="_other"``, so a node with a hundred thousand
groups exposes a bounded number of series.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shoal.runtime.counters import BUCKETS, KINDS, OUTCOMES, REMOTE, Counters

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable
    from shoal.runtime.cluster import ClusterView
    from shoal.runtime.processes import ProcessTable
    from shoal.runtime.remote import Remote
    from shoal.runtime.replication import Replication

__all__ = ["DEFAULT_TOP_GROUPS", "MetricsParts", "NodeCollector", "peer_states"]

DEFAULT_TOP_GROUPS = 50
"""Groups listed by name in the group families (``SHOAL_METRICS_TOP_GROUPS``)."""
OTHER = "_other"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsParts:
    """What the collector reads (built once by the node)."""

    counters: Counters
    processes: ProcessTable
    table: GroupTable
    cluster: ClusterView
    remote: Remote
    replication: Callable[[], Replication | None]


class NodeCollector(Collector):
    """Yields the node's families at each scrape (see the module header)."""

    def __init__(self, parts: MetricsParts, top_groups: int = DEFAULT_TOP_GROUPS) -> None:
        self._parts = parts
        self.top_groups = top_groups

    def collect(self) -> Iterator[Metric]:
        yield from self._calls()
        yield from self._processes()
        yield from self._groups()
        yield self._peers()
        yield from self._store()
        counters = self._parts.counters
        restarts = CounterMetricFamily("shoal_restarts", "Children restarted by supervisors "
                                       "of this node.")
        restarts.add_metric([], counters.restarts)
        yield restarts
        admin = CounterMetricFamily("shoal_admin_actions", "Admin requests this node "
                                    "received, by op.", labels=["action"])
        for action, count in sorted(counters.admin_actions.items()):
            admin.add_metric([action], count)
        yield admin
        poll = self._parts.remote.busy_poll
        polled = CounterMetricFamily("shoal_busy_poll_seconds", "Seconds the event loop "
                                     "polled instead of sleeping after call traffic.")
        polled.add_metric([], poll.polled_seconds)
        yield polled
        paused = CounterMetricFamily("shoal_busy_poll_pauses", "Times busy polling paused "
                                     "because another thread wanted this node's CPU.")
        paused.add_metric([], poll.backoffs)
        yield paused

    def _calls(self) -> Iterator[Metric]:
        counters = self._parts.counters
        calls = CounterMetricFamily("shoal_calls", "Calls made by this node, by kind and "
                                    "outcome.", labels=["kind", "outcome"])
        for k, kind in enumerate(KINDS):
            for o, outcome in enumerate(OUTCOMES):
                calls.add_metric([kind, outcome], counters.calls[k][o])
        yield calls
        served = CounterMetricFamily("shoal_calls_served", "Remote calls (from other nodes) "
                                     "delivered to a process of this node.")
        served.add_metric([], counters.served)
        yield served
        durations = HistogramMetricFamily(
            "shoal_call_duration_seconds", "Duration of remote and group calls made by this "
            "node (local calls are counted, not timed).", labels=["kind"])
        for k in range(REMOTE, len(KINDS)):
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), counters.durations[k],
                                    strict=True):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            durations.add_metric([KINDS[k]], buckets, counters.sums[k])
        yield durations

    def _processes(self) -> Iterator[Metric]:
        sizes = [len(proc.mailbox) for proc in self._parts.processes.all()]
        for name, doc, value in (
                ("shoal_processes", "Live processes on this node.", len(sizes)),
                ("shoal_mailbox_messages", "Messages waiting in mailboxes, in all.", sum(sizes)),
                ("shoal_mailbox_max_messages", "Messages waiting in the fullest mailbox.",
                 max(sizes, default=0))):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge

    def _groups(self) -> Iterator[Metric]:
        table = self._parts.table
        rows = [(len(table.members(scope, group)), scope, str(group),
                 len(table.routable(scope, group)))
                for scope in table.scopes() for group in table.which_groups(scope)]
        top = heapq.nsmallest(self.top_groups, rows, key=lambda r: (-r[0], r[1], r[2]))
        shown = set(top)
        others: dict[str, tuple[int, int]] = {}
        for row in rows:
            if row not in shown:
                count, live = others.get(row[1], (0, 0))
                others[row[1]] = (count + row[0], live + row[3])
        members = GaugeMetricFamily("shoal_group_members", "Members of a group as this node "
                                    "sees them, once per join.", labels=["scope", "group"])
        routable = GaugeMetricFamily("shoal_group_routable_members", "Members this node may "
                                     "select (not on a suspect node, not known dead).",
                                     labels=["scope", "group"])
        for count, scope, group, live in top:
            members.add_metric([scope, group], count)
            routable.add_metric([scope, group], live)
        for scope, (count, live) in sorted(others.items()):
            members.add_metric([scope, OTHER], count)
            routable.add_metric([scope, OTHER], live)
        yield members
        yield routable

    def _peers(self) -> Metric:
        peers = GaugeMetricFamily("shoal_peers", "Other nodes known from the store, by "
                                  "state.", labels=["state"])
        for state, names in peer_states(self._parts.cluster, self._parts.remote).items():
            peers.add_metric([state], len(names))
        return peers

    def _store(self) -> Iterator[Metric]:
        replication = self._parts.replication()
        session = replication.session if replication is not None else None
        up = GaugeMetricFamily("shoal_store_session_up", "1 while this node holds a live "
                               "store session.")
        up.add_metric([], int(session is not None and not session.ended
                              and replication is not None and replication.fenced is None))
        yield up
        writes = CounterMetricFamily("shoal_store_writes", "Membership transactions the store "
                                     "accepted from this node.")
        writes.add_metric([], replication.writer.writes if replication is not None else 0)
        yield writes
        lag = replication.writer.lag if replication is not None else None
        if lag is not None:
            gauge = GaugeMetricFamily("shoal_store_lag_seconds", "Seconds from sending this "
                                      "node's last sampled write to applying it from the watch.")
            gauge.add_metric([], lag)
            yield gauge


def peer_states(cluster: ClusterView, remote: Remote) -> dict[str, list[str]]:
    """The other nodes known from the store by state (``shoal_peers``, the
    module header), each list sorted; a node never dialled is in none."""
    states: dict[str, list[str]] = {"connected": [], "suspect": [], "down": []}
    for name in sorted(cluster.names()):
        connected = remote.connection(name) is not None
        routable = cluster.is_routable(name)
        if connected:
            states["connected" if routable else "suspect"].append(name)
        elif not routable:
            states["down"].append(name)
    return states


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)
