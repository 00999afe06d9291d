"""Process-wide state of the retry core: the clock in use and the test mode's limits."""

from __future__ import annotations

from regen.retry._clock import Clock

clock: Clock = Clock()
testing: bool = False
max_attempts: int | None = None


def current_clock() -> Clock:
    """The clock the retry core waits on now: a :class:`FakeClock` under
    :func:`~regen.retry.test_mode`, real time otherwise. Code that should wait and read the
    time as retries do (and be instant in tests) reads this at each use."""
    return clock
