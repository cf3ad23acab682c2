"""``shoal run --busy-poll-us`` and ``shoal gateway --busy-poll-us`` set the
node's busy-poll window (docs/operations.md, "Busy polling"); without the
flag the node reads ``SHOAL_BUSY_POLL_US``, else polls 150 µs. The
application records what its node was given and stops it at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoal.cli.main import cli, main

APP = '''
import signal

seen = {}


async def setup(node):
    seen["window"] = node.busy_poll.window
    signal.raise_signal(signal.SIGTERM)  # stop once set up: the node stops in order
'''


@pytest.mark.parametrize(("flags", "env", "expected"), [
    ([], None, 150e-6),
    (["--busy-poll-us", "0"], None, 0.0),
    ([], "40", 40e-6),
    (["--busy-poll-us", "500"], "40", 500e-6),
])
def test_run_sets_its_nodes_busy_poll_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        flags: list[str], env: str | None, expected: float) -> None:
    (tmp_path / "poll_app.py").write_text(APP, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "poll_app", raising=False)
    if env is None:
        monkeypatch.delenv("SHOAL_BUSY_POLL_US", raising=False)
    else:
        monkeypatch.setenv("SHOAL_BUSY_POLL_US", env)
    store = f"sqlite://{tmp_path}/cluster.db"
    assert main(["run", "poll_app:setup", "--node", "m", "--store", store, *flags]) == 0
    assert sys.modules["poll_app"].seen["window"] == pytest.approx(expected)


@pytest.mark.parametrize("command", [["run", "shoal.testing.agent:setup", "--node", "m"],
                                     ["gateway", "--http", "127.0.0.1:0"]])
@pytest.mark.parametrize("value", ["-1", "10001", "fast"])
def test_a_bad_window_is_bad_usage(tmp_path: Path, command: list[str], value: str) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    result = CliRunner().invoke(cli, [*command, "--store", store, "--busy-poll-us", value])
    assert result.exit_code == 2
    assert "--busy-poll-us" in result.output


@pytest.mark.parametrize("command", ["run", "gateway"])
def test_help_says_what_busy_polling_costs_and_how_to_turn_it_off(command: str) -> None:
    text = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
    assert "--busy-poll-us" in text
    assert "SHOAL_BUSY_POLL_US" in text and "0: off" in text
