"""Numbers read from the environment (shoal.runtime.checks.env_int and
env_float): one reading for every SHOAL_* number, so an operator's typo is
refused the same way whichever variable it is in, naming the variable."""

from __future__ import annotations

import pytest

import shoal
from shoal.runtime.checks import env_float, env_int

NAME = "SHOAL_TEST_NUMBER"


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_unset_or_blank_means_the_default(monkeypatch: pytest.MonkeyPatch,
                                          raw: str | None) -> None:
    if raw is None:
        monkeypatch.delenv(NAME, raising=False)
    else:
        monkeypatch.setenv(NAME, raw)
    assert env_int(NAME, 7, 1) == 7
    assert env_float(NAME, 0.5, 0.01) == 0.5


@pytest.mark.parametrize(("raw", "value"), [("1", 1), (" 42 ", 42), ("10000", 10000)])
def test_an_int_in_range_is_taken(monkeypatch: pytest.MonkeyPatch, raw: str, value: int) -> None:
    monkeypatch.setenv(NAME, raw)
    assert env_int(NAME, 7, 1, 10000) == value


@pytest.mark.parametrize("raw", ["0", "-3", "10001", "2.5", "ten", "1e3", "0x10"])
def test_anything_else_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                      raw: str) -> None:
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(shoal.BadArgument) as caught:
        env_int(NAME, 7, 1, 10000)
    assert caught.value.argument == NAME
    assert caught.value.value == raw.strip()
    assert "1..10000" in str(caught.value)


def test_the_expected_text_can_be_said_by_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "none")
    with pytest.raises(shoal.BadArgument, match="a number of bytes >= 1"):
        env_int(NAME, 7, 1, expected="a number of bytes >= 1")
    with pytest.raises(shoal.BadArgument, match="an int >= 1"):
        env_int(NAME, 7, 1)


@pytest.mark.parametrize(("raw", "value"), [("0.01", 0.01), ("2", 2.0), (" 1.5 ", 1.5)])
def test_a_number_at_or_over_the_minimum_is_taken(monkeypatch: pytest.MonkeyPatch,
                                                  raw: str, value: float) -> None:
    monkeypatch.setenv(NAME, raw)
    assert env_float(NAME, 1.0, 0.01) == value


@pytest.mark.parametrize("raw", ["0.001", "-1", "nan", "inf", "-inf", "soon"])
def test_a_number_under_the_minimum_or_not_finite_is_refused(
        monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(shoal.BadArgument, match=f"{NAME}.*a number >= 0.01"):
        env_float(NAME, 1.0, 0.01)
