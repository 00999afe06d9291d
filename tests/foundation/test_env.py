"""Typed readers of environment variables: defaults where unset or blank, a clear error
naming the variable and what it expects otherwise."""

from __future__ import annotations

import pytest

from regen.foundation import (
    ConfigError,
    env_bool,
    env_float,
    env_int,
    env_seconds,
    env_str,
)


def test_unset_or_blank_variables_give_the_default() -> None:
    env = {"BLANK": "  "}
    assert env_str("BLANK", "d", environ=env) == "d"
    assert env_str("UNSET", environ=env) is None
    assert env_bool("BLANK", True, environ=env) is True
    assert env_int("UNSET", 3, environ=env) == 3
    assert env_float("BLANK", 2.5, environ=env) == 2.5
    assert env_seconds("UNSET", environ=env) is None


def test_values_are_read_without_surrounding_spaces() -> None:
    env = {"S": " text ", "B": " Off ", "I": " 7 ", "F": " 0.25 "}
    assert env_str("S", environ=env) == "text"
    assert env_bool("B", True, environ=env) is False
    assert env_int("I", environ=env) == 7
    assert env_float("F", environ=env) == 0.25


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGEN_TEST_SECONDS", "1.5")
    assert env_seconds("REGEN_TEST_SECONDS") == 1.5


@pytest.mark.parametrize(
    ("read", "raw", "message"),
    [
        (lambda e: env_bool("V", True, environ=e), "maybe", "1/0, true/false, yes/no or on/off"),
        (lambda e: env_int("V", environ=e), "2.5", "a whole number"),
        (lambda e: env_int("V", minimum=1, environ=e), "0", "a whole number ≥ 1"),
        (lambda e: env_float("V", environ=e), "soon", "a number"),
        (lambda e: env_float("V", environ=e), "inf", "a finite number"),
        (lambda e: env_float("V", minimum=0, environ=e), "-1", "a number ≥ 0"),
        (lambda e: env_float("V", above=0, environ=e), "0", "a number > 0"),
        (lambda e: env_float("V", maximum=1, environ=e), "3", "a number ≤ 1"),
        (lambda e: env_seconds("V", environ=e), "-1", "a number of seconds ≥ 0"),
        (lambda e: env_seconds("V", positive=True, environ=e), "nan", "a number of seconds > 0"),
        (lambda e: env_float("V", what="a fraction", maximum=1, environ=e), "x", "a fraction"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_expects(
    read: object, raw: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        read({"V": raw})  # type: ignore[operator]
    assert str(caught.value) == f"V={raw!r}: expected {message}"
