"""``shoal top``'s usage errors and a missing cluster, each one line, and
its p99 from duration bucket deltas."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.cli import main
from shoal.cli.top import p99_ms


@pytest.mark.parametrize("flags", [["--interval", "0"], ["--interval", "nan"],
                                   ["--timeout", "-1"], ["--groups", "-3"],
                                   ["--groups", "201"], ["--interval", "soon"]])
def test_bad_arguments_exit_2_in_one_line(flags: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--once", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.strip()


def test_no_cluster_exits_1_in_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--once", "--json", "--store", f"sqlite://{tmp_path}/none.db"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"error: no cluster at {tmp_path}/none.db\n"


def test_p99_is_the_bound_of_the_bucket_holding_it_over_the_interval() -> None:
    bounds = [0.001, 0.01, 0.1]
    assert p99_ms(bounds, [5, 0, 0, 0], [5, 0, 0, 0]) is None  # no calls in between
    assert p99_ms(bounds, [1000, 0, 0, 0], [1098, 0, 2, 0]) == 100.0  # 2 of 100 in 0.1 s
    assert p99_ms(bounds, [1000, 0, 0, 0], [1099, 0, 1, 0]) == 1.0  # 1 of 100: p99 is fast
    assert p99_ms(bounds, [0, 0, 0, 0], [990, 10, 0, 0]) == 1.0
    assert p99_ms(bounds, [0, 0, 0, 0], [0, 0, 0, 7]) == 100.0  # past the last bound
