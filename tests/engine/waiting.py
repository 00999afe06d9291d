"""Waiting, in tests, for something another task or thread is doing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], object], attempts: int = 1000) -> None:
    """Return once ``condition()`` is true (checked every 10 ms, 10 s at most)."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")
