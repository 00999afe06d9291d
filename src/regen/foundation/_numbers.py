"""Telling a setting's number from what only looks like one: ``True`` is not a count of
anything, and neither NaN nor infinity is a number of seconds."""

from __future__ import annotations

import math
from typing import TypeGuard


def is_whole(value: object) -> TypeGuard[int]:
    """An ``int``, and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite(value: object) -> TypeGuard[int | float]:
    """A finite ``int`` or ``float``, and not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
