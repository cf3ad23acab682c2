"""The audit log: one record per applied change, kept in the cluster's store.

Every command that changes the cluster (``reap --apply``, ``evict``,
``drain``, ``reload``, ``deploy``) writes one record *after* the change,
with its outcome, through :func:`record` (or :class:`Audit`, its CLI
form). Records are durable store records (store Rule 7, kind
``"audit"``): bound to no session, seen by every operator on every host,
the newest ``shoal.store.base.RECORD_KEEP`` (10,000) kept. ``shoal audit``
lists them.

A record is JSON (never executed, never unpickled), version 1, fields:

- ``v``: 1; ``time``: UTC, ISO 8601 with milliseconds (``...Z``);
- ``user``, ``host``: who ran the command (``runtime.admin.operator``);
- ``command``: ``"reap"``, ``"evict"``, ``"drain"``, ``"reload"``,
  ``"deploy"``; ``args``: what it was given (a JSON object);
- ``outcome``: ``"done"``, ``"refused"`` (a guard, the owner, or an unknown
  target said no; nothing changed) or ``"failed"`` (it could not be done,
  or only in part); ``why``: the refusal or error, one line (``""`` when done);
- ``evidence``: what the change was based on and what it did (reap's plan
  with per-entry evidence, evict's plan, drain's report, reload's per-pid
  results); larger than the record limit, it is replaced by a note.

Rules:

- Rule 1: the change comes first. A record that cannot be written never
  hides the outcome: the command prints its outcome, then one line
  ``warning: the audit record could not be written: ...`` on stderr, and
  exits 1 (:meth:`Audit.done`, :meth:`Audit.refusals`).
- Rule 2: a refused or failed change is recorded too; bad usage (exit 2)
  and a plan the operator declined are not changes and are not recorded.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import click

import shoal
from shoal.cli.common import echo_table, loop_factory, store_options
from shoal.cli.inspect import cluster_name, store_url, to_json
from shoal.runtime.admin import operator
from shoal.store import SqliteStore, open_store, read_records
from shoal.store.base import RECORD_KEEP, RECORD_MAX_BYTES

__all__ = ["AUDIT_KIND", "Audit", "Outcome", "audit_command", "encode", "read", "record",
           "warn_unrecorded"]

AUDIT_KIND = "audit"
"""The store record kind of the audit log."""

Outcome = Literal["done", "refused", "failed"]


def _now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(command: str, args: Mapping[str, Any], outcome: Outcome, *, why: str = "",
           evidence: Any = None) -> bytes:
    """One audit record's bytes (the module docstring lists the fields)."""
    fields: dict[str, Any] = {"v": 1, "time": _now(), **operator(), "command": command,
                              "args": to_json(dict(args)), "outcome": outcome,
                              "why": " ".join(why.split()), "evidence": to_json(evidence)}
    value = json.dumps(fields, allow_nan=False, separators=(",", ":")).encode()
    if len(value) > RECORD_MAX_BYTES:
        fields["evidence"] = {"omitted": f"{len(value)} bytes of evidence, over the "
                                         f"{RECORD_MAX_BYTES}-byte record limit"}
        value = json.dumps(fields, allow_nan=False, separators=(",", ":")).encode()
    return value


async def record(url: str | None, cluster: str | None, *, command: str,
                 args: Mapping[str, Any], outcome: Outcome, why: str = "",
                 evidence: Any = None) -> int:
    """Write one audit record to the store of the cluster at ``url``.

    Args:
        url, cluster: as the commands' ``--store`` and ``--cluster`` (None:
            ``SHOAL_STORE`` / ``SHOAL_CLUSTER``, then the defaults).
        command, args, outcome, why, evidence: the record's fields.

    Returns:
        The record's sequence number.

    Raises:
        StoreUnavailable: the store cannot be reached, or there is no
            cluster at a SQLite path (none is created).
        BadArgument: the URL is malformed.
    """
    value = encode(command, args, outcome, why=why, evidence=evidence)
    store = open_store(store_url(url) or None, cluster=cluster_name(cluster))
    try:
        if isinstance(store, SqliteStore) and not store.path.is_file():
            raise shoal.StoreUnavailable(f"no cluster at {store.path}")
        return await store.append_record(AUDIT_KIND, value)
    finally:
        await store.close()


async def read(url: str | None, cluster: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` audit records, newest first, each with its ``seq``;
    read-only (``store.read_records``). A record that is not a JSON object is
    shown as ``{"seq": ..., "unreadable": "<reason>"}``."""
    found = await read_records(store_url(url) or None, AUDIT_KIND, limit,
                               cluster=cluster_name(cluster))
    rows: list[dict[str, Any]] = []
    for item in found:
        try:
            fields = json.loads(item.value)
        except ValueError as exc:
            fields = {"unreadable": f"not JSON: {exc}"}
        if not isinstance(fields, dict):
            fields = {"unreadable": "not a JSON object"}
        rows.append({"seq": item.seq, **fields})
    return rows


def warn_unrecorded(error: BaseException) -> None:
    """The one-line warning of Rule 1 (on stderr)."""
    click.echo(f"warning: the audit record could not be written: {error}", err=True)


class Audit:
    """The audit record of one CLI command, written after the change (Rules 1, 2).

    Set :attr:`evidence` as soon as it is known (the plan), run the change
    inside :meth:`refusals`, print the outcome, then call :meth:`done`.
    """

    def __init__(self, url: str | None, cluster: str | None, command: str,
                 args: Mapping[str, Any]) -> None:
        self.url, self.cluster, self.command, self.args = url, cluster, command, dict(args)
        self.evidence: Any = None

    def _write(self, outcome: Outcome, why: str) -> BaseException | None:
        try:
            asyncio.run(record(self.url, self.cluster, command=self.command, args=self.args,
                               outcome=outcome, why=why, evidence=self.evidence))
        except (shoal.ShoalError, OSError) as error:
            return error
        return None

    def done(self, outcome: Outcome = "done", why: str = "") -> None:
        """Record the change (its outcome already printed); on a failed write
        warn and exit 1."""
        error = self._write(outcome, why)
        if error is not None:
            warn_unrecorded(error)
            raise SystemExit(1)

    @contextmanager
    def refusals(self) -> Iterator[None]:
        """Record a change that raised: ``refused`` for a target or owner
        refusal, ``failed`` for anything else shoal or the OS raised; then
        let the error out. Usage errors and a declined plan pass unrecorded."""
        try:
            yield
        except (shoal.UsageError, click.exceptions.Abort):
            raise
        except (shoal.ShoalError, OSError) as exc:
            refused = isinstance(exc, shoal.TargetError | shoal.BadRequest)
            error = self._write("refused" if refused else "failed", str(exc))
            if error is None:
                raise
            click.echo(f"error: {exc}", err=True)
            warn_unrecorded(error)
            raise SystemExit(1) from exc


def _since(text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise shoal.BadArgument("--since", text, "an ISO 8601 time, e.g. 2026-12-02T09:30:00Z "
                                "(UTC when no offset is given)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _at_or_after(row: dict[str, Any], since: datetime.datetime) -> bool:
    try:
        return datetime.datetime.fromisoformat(str(row.get("time"))) >= since
    except ValueError:
        return False


def _what(row: dict[str, Any]) -> str:
    args = row.get("args")
    text = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in args.items()) \
        if isinstance(args, dict) else ""
    why = row.get("why") or row.get("unreadable")
    return f"{text} ({why})" if why else text


@click.command("audit")
@store_options
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, RECORD_KEEP),
              help="Show at most this many records (the newest).")
@click.option("--since", default=None, metavar="TIME",
              help="Only records at or after TIME (ISO 8601; UTC without an offset).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def audit_command(store: str | None, cluster: str | None, limit: int, since: str | None,
                  as_json: bool) -> None:
    """List the audit log: every applied change, newest first (read-only, as nodes).

    One record per reap --apply, evict, drain, reload and deploy, refused
    and failed ones included, written by whoever ran it on whatever host.
    JSON: a list, newest first, of {seq, v, time (UTC ISO 8601), user, host,
    command, args, outcome ("done", "refused" or "failed"), why, evidence}.
    The store keeps the newest 10,000 records.
    """
    moment = _since(since)
    loop_factory()
    rows = asyncio.run(read(store, cluster, RECORD_KEEP if moment else limit))
    if moment is not None:
        rows = [row for row in rows if _at_or_after(row, moment)][:limit]
    if as_json:
        click.echo(json.dumps(rows, indent=2, allow_nan=False))
        return
    echo_table([{"seq": r["seq"], "time": r.get("time", ""),
                 "who": f"{r.get('user', '?')}@{r.get('host', '?')}",
                 "command": r.get("command", ""), "outcome": r.get("outcome", ""),
                 "what": _what(r)} for r in rows],
               ["seq", "time", "who", "command", "outcome", "what"])
