"""A ``Secret`` shows itself masked everywhere but ``reveal()``."""

from __future__ import annotations

import pickle

import pytest

from regen.providers import Secret

KEY = "sk-proj-abcdefghijklmnop1234"


def test_repr_str_and_format_are_masked() -> None:
    secret = Secret(KEY)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret:>30}", repr([secret])):
        assert KEY not in shown
        assert "…1234" in shown
    assert secret.masked == "sk-…1234"
    assert secret.reveal() == KEY


def test_secrets_compare_by_value_and_refuse_pickling() -> None:
    assert Secret(KEY) == Secret(KEY)
    assert Secret(KEY) != Secret(KEY + "x")
    assert Secret(KEY) != KEY
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(Secret(KEY))


def test_short_and_empty_secrets() -> None:
    assert not Secret("")
    assert "abc" not in repr(Secret("abc"))
