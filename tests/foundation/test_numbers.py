"""A setting's number told from a bool, NaN or infinity."""

from __future__ import annotations

import math

import pytest

from regen.foundation import is_finite, is_whole


@pytest.mark.parametrize(
    ("value", "whole", "finite"),
    [
        (3, True, True),
        (0, True, True),
        (-2, True, True),
        (2.5, False, True),
        (True, False, False),
        (False, False, False),
        (math.nan, False, False),
        (math.inf, False, False),
        ("3", False, False),
        (None, False, False),
    ],
)
def test_numbers_are_told_from_what_only_looks_like_one(
    value: object, whole: bool, finite: bool
) -> None:
    assert is_whole(value) is whole
    assert is_finite(value) is finite
