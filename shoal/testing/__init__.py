"""Failure testing for shoal applications, from your own pytest suite.

- :class:`LocalCluster`: real node processes running your app on loopback
  (``module:function`` or a supervisor factory, as ``shoal run`` takes), on
  the embedded store or an etcd URL, plus an in-process client node to
  call them from. Fault injectors: ``kill9``, ``sigstop``/``sigcont``,
  ``restart``, ``replace_hung``, ``store_outage``, and, with
  ``partitionable=True``, ``cut``/``heal`` of the link between two chosen
  nodes (:mod:`shoal.testing.partition`). Every node's log is kept and
  printed when the test's ``async with`` block fails.
- :func:`wait_until`: a bounded wait for a condition; :class:`LoopStalls`:
  the longest time the event loop was held while it measured.
- :mod:`shoal.testing.scenario`: chaos runs (what ``shoal chaos`` does):
  :class:`Load` (callers recording every call), :class:`Faults`
  (injectors recording every fact), :func:`run_chaos` (a seeded schedule
  of faults under load, then the checker's report), and
  :data:`SERVICE_APP`, a sample supervised service to run them on.
- :mod:`shoal.testing.invariants`: a :class:`Timeline` of calls and facts,
  and :func:`check`, which reports every broken guarantee (G2 to G6,
  incarnations) with the timeline around it.

See the README section "Failure testing" for a complete test.
"""

from shoal.testing.cluster import LocalCluster, NodeProcess, wait_until
from shoal.testing.invariants import Bounds, Report, RollingCheck, Timeline, Violation, check
from shoal.testing.partition import Partitions
from shoal.testing.scenario import (
    SERVICE_APP,
    ChaosResult,
    FaultRecord,
    Faults,
    Load,
    LoadStats,
    SecondBucket,
    run_chaos,
)
from shoal.testing.stalls import LoopStalls

__all__ = ["SERVICE_APP", "Bounds", "ChaosResult", "FaultRecord", "Faults", "Load",
           "LoadStats", "LocalCluster", "LoopStalls", "NodeProcess", "Partitions", "Report",
           "RollingCheck", "SecondBucket", "Timeline", "Violation", "check", "run_chaos",
           "wait_until"]
