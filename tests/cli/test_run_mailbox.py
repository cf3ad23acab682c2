"""``shoal run`` bounds mailboxes by default (README: "Bounded mailboxes").

A node hosted by ``shoal run`` gives every process whose behaviour sets no
``mailbox_size`` a bound of 10,000 messages, so a flood of casts is refused
with ``Overloaded`` instead of filling memory; ``--mailbox-size`` changes it
and ``--mailbox-size 0`` removes it. The application here records what its
node was given and stops it at once (SIGTERM, as an operator would).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shoal.cli.main import main

APP = '''
import signal

seen = {}


async def setup(node):
    seen["mailbox_size"] = node.mailbox_size
    signal.raise_signal(signal.SIGTERM)  # stop once set up: the node stops in order
'''


@pytest.mark.parametrize(("flags", "expected"), [
    ([], 10_000),
    (["--mailbox-size", "50"], 50),
    (["--mailbox-size", "0"], None),
])
def test_run_gives_its_node_a_default_mailbox_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        flags: list[str], expected: int | None) -> None:
    (tmp_path / "mailbox_app.py").write_text(APP, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mailbox_app", raising=False)
    store = f"sqlite://{tmp_path}/cluster.db"
    assert main(["run", "mailbox_app:setup", "--node", "m", "--store", store, *flags]) == 0
    assert sys.modules["mailbox_app"].seen == {"mailbox_size": expected}


def test_run_refuses_a_negative_mailbox_size(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    assert main(["run", "shoal.testing.agent:setup", "--node", "m", "--store", store,
                 "--mailbox-size", "-1"]) == 2
