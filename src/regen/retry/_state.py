"""Process-wide state of the retry core: the clock in use and the test mode's limits."""

from __future__ import annotations

from regen.retry._clock import Clock

clock: Clock = Clock()
testing: bool = False
max_attempts: int | None = None
