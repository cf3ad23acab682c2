"""Pid.parse: the pid an operator copies from a log or a table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal import BadArgument, Pid

names = st.text(alphabet=st.characters(blacklist_characters="/", min_codepoint=32),
                min_size=1, max_size=40)
ints = st.integers(min_value=0, max_value=(1 << 63) - 1)


@given(names, ints, ints)
def test_what_str_prints_parses_back(node: str, creation: int, serial: int) -> None:
    pid = Pid(node, creation, serial)
    assert Pid.parse(str(pid)) == pid


def test_the_angle_brackets_may_be_left_out_and_node_names_may_hold_dots() -> None:
    assert Pid.parse("api.eu-1.1733.5") == Pid("api.eu-1", 1733, 5)
    assert Pid.parse(" <api-1.2.3> ") == Pid("api-1", 2, 3)


@pytest.mark.parametrize("text", ["", "<>", "<api-1.2>", "api-1.x.3", "<api-1.2.3",
                                  "api-1.2.3>", "<.2.3>", "api-1.-2.3", "api-1.2.3.", 42])
def test_anything_else_is_a_bad_argument_naming_the_form(text: object) -> None:
    with pytest.raises(BadArgument, match=r"<node\.creation\.serial>"):
        Pid.parse(text)  # type: ignore[arg-type]
