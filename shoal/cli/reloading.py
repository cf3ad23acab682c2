"""``shoal reload NODE MODULE``: hot code reload of a running node, audited.

The CLI joins the cluster briefly (``operate.cli_node``) and asks NODE over
the admin channel (op ``reload``, docs/protocol.md 3.5) to run
``node.reload(MODULE, extra, timeout=...)`` (``runtime/reload.py``): the
module is re-imported there and every live process whose class it defines
moves to the new class between two of its messages. The node answers per
pid what moved and what failed; a module that does not import changes
nothing. Exit 1 if the import failed or any pid failed; the change is
written to the audit log either way (``cli/audit.py``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

import shoal
from shoal.cli.audit import Audit
from shoal.cli.common import confirm, loop_factory, parse_json, store_options
from shoal.cli.operate import ask, cli_node
from shoal.runtime.checks import check_name, check_timeout

__all__ = ["reload_command", "reload_text"]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text


def reload_text(result: dict[str, Any]) -> str:
    """The human form of a reload answer."""
    head = f"node {result['node']}: {result['module']}"
    if result["error"] is not None:
        return (f"{head} failed to import; nothing changed: {_last_line(result['error'])}")
    lines = [f"{head} reloaded: {len(result['moved'])} process(es) moved, "
             f"{len(result['failed'])} failed"]
    lines += [f"  moved  {pid}" for pid in result["moved"]]
    lines += [f"  failed {row['pid']}: {_last_line(row['why'])}" for row in result["failed"]]
    return "\n".join(lines)


@click.command("reload")
@click.argument("node_name", metavar="NODE")
@click.argument("module")
@store_options
@click.option("--extra", default=None, metavar="JSON",
              help="A JSON value passed to every code_change(old_version, extra).")
@click.option("--timeout", default=5.0, show_default=True, type=float,
              help="Seconds each process has to reach its move, then for its code_change "
                   "(a process past it is reported, not killed).")
@click.option("--yes", is_flag=True, help="Act without asking (required without a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def reload_command(node_name: str, module: str, store: str | None, cluster: str | None,
                   extra: str | None, timeout: float, yes: bool, as_json: bool) -> None:
    """Hot-reload MODULE on the running node NODE.

    NODE re-imports MODULE and moves each of its live processes whose class
    MODULE defines to the new class, between two of its messages, running
    the new class's code_change. A module that does not import changes
    nothing. Prints per pid what moved and what failed (a failed pid keeps
    running its old code). Exit 1 if the import failed or any pid failed.
    Recorded in the audit log. JSON fields: node, module, moved [pid],
    failed [{pid, why}], error (the import's traceback text, or null).
    """
    check_name("node", node_name)
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise shoal.BadArgument("MODULE", module, "a dotted module name, e.g. myapp.workers")
    seconds = check_timeout(timeout)
    value = parse_json("--extra", extra) if extra is not None else None
    confirm(f"reload {module} on node {node_name}?", yes)
    loop_factory()
    audit = Audit(store, cluster, "reload", {"node": node_name, "module": module,
                                             "extra": value, "timeout": seconds})

    async def go() -> dict[str, Any]:
        async with cli_node(store, cluster) as node:
            answer = await ask(node, node_name, "reload",
                               {"module": module, "extra": value, "timeout": seconds},
                               2 * seconds + 5.0)
            return {"node": answer["node"], "module": answer["module"],
                    "moved": [str(pid) for pid in answer["moved"]],
                    "failed": [{"pid": str(row["pid"]), "why": row["why"]}
                               for row in answer["failed"]],
                    "error": answer["error"]}

    with audit.refusals():
        result = asyncio.run(go())
    click.echo(json.dumps(result, indent=2, allow_nan=False) if as_json
               else reload_text(result))
    audit.evidence = result
    if result["error"] is not None:
        audit.done("failed", f"{module} failed to import: {_last_line(result['error'])}")
    elif result["failed"]:
        audit.done("failed", f"{len(result['failed'])} process(es) failed to move")
    else:
        audit.done()
    if result["error"] is not None or result["failed"]:
        raise SystemExit(1)
