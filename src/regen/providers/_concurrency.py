"""Adaptive concurrency for one process: back off when a provider says "too many".

Additive increase, multiplicative decrease (AIMD), as TCP does: a rate-limited answer
halves the number of calls this process runs at once, and every window of successes (as
many as the limit) lets one more run. A ``Retry-After`` holds every new call until it
passes. Only a rate limit met by a call started after the last decrease halves the limit
again: the other calls of the same burst were sent under the old limit and say nothing new.
"""

from __future__ import annotations

import asyncio
import time


class AdaptiveLimit:
    """How many calls this process runs at once against one provider.

    ``ceiling`` caps the limit (``None``: no cap; the limit is then unset until the first
    rate-limited answer sets it to half the calls in flight). ``adaptive=False`` keeps the
    limit at ``ceiling``.
    """

    def __init__(self, ceiling: int | None = None, *, adaptive: bool = True) -> None:
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.limit: float | None = float(ceiling) if ceiling is not None else None
        self.in_flight = 0
        self._successes = 0
        self._decreased_at = float("-inf")
        self._paused_until = 0.0
        self._changed: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"AdaptiveLimit(limit={self.limit}, in_flight={self.in_flight})"

    def _condition(self) -> asyncio.Condition:
        # One per event loop: sync wrappers run each call on a loop of its own.
        loop = asyncio.get_running_loop()
        if self._changed is None or self._loop is not loop:
            self._changed, self._loop = asyncio.Condition(), loop
        return self._changed

    def _free(self) -> bool:
        return self.limit is None or self.in_flight < max(1, int(self.limit))

    def wait_needed(self) -> float:
        """Seconds new calls are held by a ``Retry-After`` (0: none)."""
        return max(0.0, self._paused_until - time.monotonic())

    async def acquire(self, max_wait: float) -> float:
        """Wait for a slot (at most ``max_wait`` seconds); return the call's start time.

        Raises :class:`TimeoutError` when no slot came in time.
        """
        if self.limit is None and not self._paused_until:
            self.in_flight += 1
            return time.monotonic()
        deadline = time.monotonic() + max_wait
        pause = self.wait_needed()
        if pause:
            if pause > max_wait:
                raise TimeoutError(pause)
            await asyncio.sleep(pause)
        if not self._free():
            condition = self._condition()
            async with condition:
                while not self._free():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(max_wait)
                    try:
                        await asyncio.wait_for(condition.wait(), left)
                    except TimeoutError:
                        if not self._free():
                            raise
        self.in_flight += 1
        return time.monotonic()

    async def release(
        self, started: float, *, rate_limited: bool, retry_after: float | None
    ) -> None:
        """End a call begun at ``started``: a success, or a rate-limited answer."""
        self.in_flight -= 1
        if rate_limited:
            self._rate_limited(started, retry_after)
        elif self.limit is not None and self.adaptive:
            self._successes += 1
            if self._successes >= self.limit:
                self._successes = 0
                grown = self.limit + 1
                self.limit = grown if self.ceiling is None else min(float(self.ceiling), grown)
        if self._changed is not None and self._loop is asyncio.get_running_loop():
            async with self._changed:
                self._changed.notify_all()

    def hold(self, seconds: float) -> None:
        """Hold new calls for ``seconds`` (a server's ``Retry-After``)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def _rate_limited(self, started: float, retry_after: float | None) -> None:
        now = time.monotonic()
        if retry_after:
            self.hold(retry_after)
        if not self.adaptive or started < self._decreased_at:
            return
        current = self.limit if self.limit is not None else float(self.in_flight + 1)
        self.limit = max(1.0, current / 2)
        self._successes = 0
        self._decreased_at = now
