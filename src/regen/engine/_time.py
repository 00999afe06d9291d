"""Time as the engine sees it: the retry core's clock, so ``regen.retry.test_mode()`` makes
the engine's own waits (automatic run retries) instant and its timestamps controllable."""

from __future__ import annotations

import asyncio

from regen.retry import current_clock


def now() -> float:
    """Seconds since the epoch (fake under test mode)."""
    return current_clock().wall()


def monotonic() -> float:
    """A monotonic reading in seconds, for intervals (fake under test mode)."""
    return current_clock().monotonic()


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` on the retry core's clock (instant under test mode)."""
    await current_clock().asleep(max(0.0, seconds))
    await asyncio.sleep(0)  # a fake clock returns without yielding; let others run
