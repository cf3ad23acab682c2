"""A node's store outages, for its log: one line when one starts, one when it ends.

Owns the record of what the node is currently failing to do with its store
(``"store watch"``, ``"membership write"``, ``"store session re-open"``). A part that retries a
store operation reports each failure and each success here; the log then
says once that the store went away (WARNING, with the error) and once that
it came back (INFO, with how long it was gone and why), instead of one line
per retry. ``store_backoff`` is the schedule those retries wait by (the one
jittered backoff of ``shoal._backoff``).

Rules:

- Rule 1: bounded by the callers' fixed set of operation names: one entry
  per operation failing now, removed when it succeeds again.
- Rule 2: the retries in between are logged at DEBUG only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from shoal._backoff import backoff_delays

__all__ = ["StoreOutages", "store_backoff"]

log = logging.getLogger("shoal")

STORE_RETRY_FIRST, STORE_RETRY_MAX = 0.05, 2.0  # seconds, before jitter


def store_backoff() -> Iterator[float]:
    """Delays between attempts to reach a store that failed (jittered, so
    nodes that lost the store together do not retry together)."""
    return backoff_delays(initial=STORE_RETRY_FIRST, maximum=STORE_RETRY_MAX)


class StoreOutages:
    """The store operations a node is failing at now (see the module header).

    Args:
        node: the node's name, for the log.
    """

    def __init__(self, node: str) -> None:
        self._node = node
        # Invariant: operation -> (monotonic time of its first failure, failures,
        # last error) while it fails; absent once it succeeded again.
        self._failing: dict[str, tuple[float, int, str]] = {}

    def failed(self, operation: str, error: BaseException, retry_in: float | None = None) -> None:
        """Log a failed store ``operation``: WARNING the first time, DEBUG after."""
        retry = f"; retrying in {retry_in:.2f}s" if retry_in is not None else "; retrying"
        known = self._failing.get(operation)
        if known is None:
            self._failing[operation] = (time.monotonic(), 1, str(error))
            log.warning("node %s: %s failed (%s)%s", self._node, operation, error, retry,
                        extra={"shoal_event": {"event": "store_unavailable",
                                               "operation": operation, "reason": str(error)}})
        else:
            self._failing[operation] = (known[0], known[1] + 1, str(error))
            log.debug("node %s: %s still failing (%s)%s", self._node, operation, error, retry)

    def succeeded(self, operation: str) -> None:
        """Note ``operation`` worked; log at INFO if it was failing until now."""
        known = self._failing.pop(operation, None)
        if known is not None:
            since, failures, error = known
            log.info("node %s: the store is back: %s works again after %.1fs "
                     "(%d failed attempts; last error: %s)",
                     self._node, operation, time.monotonic() - since, failures, error,
                     extra={"shoal_event": {"event": "store_back", "operation": operation,
                                            "down_s": round(time.monotonic() - since, 3),
                                            "failures": failures, "reason": error}})

    def failing(self) -> list[str]:
        """The operations failing now."""
        return list(self._failing)
