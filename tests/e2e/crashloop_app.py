"""The application of the crash-loop test, run by ``shoal run`` as a tree.

``shoal run crashloop_app:CrashLoopTree``: the node's top supervisor starts
the test agent's ``Control`` (so a LocalCluster can drive the node) and four
``Flaky`` workers in the group ``work``. A worker crashes on every request
that is a multiple of 100 (1% of a run numbered 1..N) and answers the
others with the request itself.
"""

from __future__ import annotations

from typing import Any

import shoal
from shoal.testing.agent import CONTROL_SCOPE, Control

WORKERS = 4
GROUP = "work"


def crashes(request: Any) -> bool:
    """Whether ``request`` makes its worker crash."""
    return isinstance(request, int) and request % 100 == 0


class Flaky(shoal.GenServer):
    """Answers a request with itself; crashes on 1% of them."""

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if crashes(request):
            raise RuntimeError(f"request {request} crashes its worker")
        return request


class CrashLoopTree(shoal.Supervisor):
    """Control plus the workers, each joined to its group as it starts."""

    intensity = 1000
    period = 5.0

    def children(self) -> list[shoal.ChildSpec]:
        return [shoal.ChildSpec("control", Control, groups=[(CONTROL_SCOPE, self.node.name)]),
                *(shoal.ChildSpec(f"worker-{n}", Flaky, groups=[("default", GROUP)])
                  for n in range(WORKERS))]
