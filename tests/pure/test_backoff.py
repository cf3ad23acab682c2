"""The one retry schedule (``shoal._backoff``), and that nobody rolls their own.

Every loop that retries takes its delays from ``backoff_delays``: jittered,
so that nodes which lost the store or a peer together do not retry in
lockstep, and bounded, so that a long outage is retried at a known pace.
The last test reads every module's source and fails on a hand-rolled
exponential backoff (``delay * 2``, ``min(delay * 2, cap)``, ``2 ** attempt``).
"""

from __future__ import annotations

import ast
import itertools
import random
from pathlib import Path

import pytest

import shoal
from shoal._backoff import backoff_delays
from shoal.errors import BadArgument
from shoal.transport import TransportConfig
from shoal.transport import backoff_delays as transport_delays

PACKAGE = Path(shoal.__file__).resolve().parent


def test_delays_grow_then_stay_capped_within_the_jitter_band() -> None:
    delays = list(itertools.islice(
        backoff_delays(initial=0.05, maximum=2.0, jitter=0.5, rng=random.Random(1)), 40))
    for k, delay in enumerate(delays):
        base = min(0.05 * 2**k, 2.0)
        assert base * 0.5 <= delay <= base, (k, delay)
    assert max(delays) <= 2.0
    assert max(delays[10:]) > 1.0  # it does reach the cap's band


def test_delays_are_jittered_so_nodes_failing_together_do_not_retry_together() -> None:
    nodes = [list(itertools.islice(backoff_delays(initial=0.05, maximum=2.0,
                                                  rng=random.Random(seed)), 12))
             for seed in range(20)]
    # At every step the 20 nodes wait different times (no lockstep)...
    for step in range(12):
        assert len({round(node[step], 9) for node in nodes}) == 20, step
    # ...and one node's delays at the cap are not all the same either.
    assert len({round(d, 9) for d in nodes[0][8:]}) == 4


def test_without_an_injected_rng_delays_are_still_jittered_and_bounded() -> None:
    delays = list(itertools.islice(backoff_delays(initial=1.0, maximum=1.0, jitter=0.5), 50))
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 1


def test_no_jitter_gives_the_plain_capped_exponential() -> None:
    delays = list(itertools.islice(backoff_delays(initial=0.1, maximum=0.8, jitter=0), 6))
    assert delays == [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"initial": 0, "maximum": 1}, "initial"),
        ({"initial": -1, "maximum": 1}, "initial"),
        ({"initial": True, "maximum": 1}, "initial"),
        ({"initial": 1, "maximum": float("nan")}, "maximum"),
        ({"initial": 2, "maximum": 1}, "maximum"),
        ({"initial": 1, "maximum": 2, "multiplier": 0.5}, "multiplier"),
        ({"initial": 1, "maximum": 2, "jitter": 1.0}, "jitter"),
        ({"initial": 1, "maximum": 2, "jitter": -0.1}, "jitter"),
    ],
)
def test_bad_parameters_are_refused_at_the_call(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(BadArgument) as info:
        backoff_delays(**kwargs)  # type: ignore[arg-type]
    assert info.value.argument == name


def test_the_transport_dials_on_the_same_schedule() -> None:
    config = TransportConfig(cluster="c", node="n", creation=1, secret=b"s" * 16,
                             backoff_initial=0.05, backoff_max=2.0, backoff_jitter=0.5)
    ours = itertools.islice(transport_delays(config, random.Random(7)), 20)
    shared = itertools.islice(backoff_delays(initial=0.05, maximum=2.0, jitter=0.5,
                                             rng=random.Random(7)), 20)
    assert list(ours) == list(shared)


# -- nobody hand-rolls a backoff -------------------------------------------------------

# Names a retry delay goes by; a product of one of them with a constant above 1
# is a delay growing by hand.
DELAY_WORDS = ("delay", "backoff", "retry", "wait", "pause", "sleep")


def _name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _is_delay(node: ast.AST) -> bool:
    name = _name_of(node).lower()
    return any(word in name for word in DELAY_WORDS)


def _grows(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
        and not isinstance(node.value, bool) and node.value > 1


def hand_rolled_backoffs(source: str, filename: str = "<source>") -> list[str]:
    """Every place in ``source`` that grows a delay by hand, as "line: code"."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        bad = False
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            # 2 ** attempt: an exponential of a changing count.
            bad = isinstance(node.left, ast.Constant) and not isinstance(node.right, ast.Constant)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            bad = (_is_delay(node.left) and _grows(node.right)) or (
                _is_delay(node.right) and _grows(node.left))
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Mult):
            bad = _is_delay(node.target)
        if bad:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checker_finds_the_loops_it_is_meant_to_forbid() -> None:
    for loop in (
        "delay = min(delay * 2, 2.0)",
        "self._delay = min(self._delay * 2, RETRY_MAX)",
        "await asyncio.sleep(min(1.0, 0.05 * 2**failures))",
        "await asyncio.sleep(min(remaining, 0.05 * 2 ** min(attempt, 4)))",
        "retry_after *= 2",
    ):
        assert hand_rolled_backoffs(loop), loop
    for fine in ("limit = 2**64", "timeout = self._ttl / 3", "delay = next(delays)",
                 "deadline = now + delay", "size * 2"):
        assert not hand_rolled_backoffs(fine), fine


MODULES = [
    pytest.param(path, id=str(path.relative_to(PACKAGE.parent)))
    for path in sorted(PACKAGE.rglob("*.py"))
    if path.name != "_backoff.py"
]


@pytest.mark.parametrize("path", MODULES)
def test_no_module_hand_rolls_a_backoff(path: Path) -> None:
    found = hand_rolled_backoffs(path.read_text(encoding="utf-8"), str(path))
    assert not found, (
        f"{path.name} grows a retry delay by hand; use shoal._backoff.backoff_delays: {found}"
    )
