"""Several OS processes creating the same brand-new SQLite store at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = """
import asyncio, sys
from shoal.store import SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1])
    session = await store.open_session(sys.argv[2], b"", 5.0)
    await session.close()
    await store.close()

asyncio.run(main())
"""


def test_processes_creating_one_new_database_together_all_succeed(tmp_path: Path) -> None:
    for round_ in range(3):
        db = tmp_path / f"round{round_}" / "cluster.db"
        children = [
            subprocess.Popen([sys.executable, "-c", CHILD, str(db), f"node-{i}"],
                             stderr=subprocess.PIPE, text=True)
            for i in range(6)
        ]
        failures = []
        for child in children:
            _, err = child.communicate(timeout=60)
            if child.returncode != 0:
                failures.append(err.strip().splitlines()[-1:])
        assert failures == []
