"""What the callers' node's ``/metrics`` says of the demo's group calls.

The demo's figures (the live display, the report, ``--plot``) come from the
callers' own count of their calls (``shoal.testing.Load``). The node they
call through counts the same calls for Prometheus
(``shoal_calls_total{kind="group"}``). This module reads that count over
the node's real HTTP endpoint at the end of the run, so the report can say
whether the two agree: the operator's dashboard and the demo must tell the
same story, and a difference is a defect of one of them.

Rules:

- Rule 1: read once, after every caller has finished its last call and
  before the node stops, so that both counts cover exactly the same calls.
- Rule 2: a scrape that fails (no endpoint, a refused connection, a body
  that does not parse) is reported as such, never as a disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DemoMetrics", "scrape_group_calls"]

SCRAPE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoMetrics:
    """The callers' node's count of its group calls, read from ``/metrics``."""

    url: str
    ok: int = 0
    """``shoal_calls_total{kind="group", outcome="ok"}``."""
    failed: int = 0
    """The same family, every other outcome."""
    timed: int = 0
    """``shoal_call_duration_seconds_count{kind="group"}``: calls timed."""
    error: str = ""
    """Why the endpoint could not be read; empty when it was."""

    def agrees(self, ok: int, failed: int) -> bool:
        """Whether it counted ``ok`` answered and ``failed`` failed calls,
        each of them timed once."""
        return not self.error and (self.ok, self.failed, self.timed) == (ok, failed, ok + failed)


async def scrape_group_calls(host: str, port: int) -> DemoMetrics:
    """GET ``http://host:port/metrics`` and sum the group-call families."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://{host}:{port}/metrics"
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as session, \
                session.get(url) as answer:
            if answer.status != 200:
                return DemoMetrics(url=url, error=f"HTTP {answer.status}")
            text = await answer.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return DemoMetrics(url=url, error=f"{type(exc).__name__}: {exc}")
    ok = failed = timed = 0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("kind") != "group":
                    continue
                if sample.name == "shoal_calls_total":
                    if sample.labels.get("outcome") == "ok":
                        ok += int(sample.value)
                    else:
                        failed += int(sample.value)
                elif sample.name == "shoal_call_duration_seconds_count":
                    timed += int(sample.value)
    except ValueError as exc:
        return DemoMetrics(url=url, error=f"unparsable /metrics: {exc}")
    return DemoMetrics(url=url, ok=ok, failed=failed, timed=timed)
