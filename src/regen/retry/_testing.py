"""A test mode for users' own test suites: no real sleeping, attempts capped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from regen.foundation import ConfigError, is_whole
from regen.retry import _state
from regen.retry._clock import Clock, FakeClock


@contextmanager
def test_mode(*, attempts: int | None = None, clock: Clock | None = None) -> Iterator[Clock]:
    """Retry without sleeping for the duration of a ``with`` block; restored on exit.

    Waits are taken on a :class:`FakeClock` (recorded in its ``sleeps``, never slept) unless
    another ``clock`` is given; ``attempts`` caps every policy's attempts. Yields the clock.
    """
    if attempts is not None and (not is_whole(attempts) or attempts < 1):
        raise ConfigError(f"attempts={attempts!r}: expected a whole number ≥ 1 (or None)")
    saved = (_state.clock, _state.testing, _state.max_attempts)
    chosen = FakeClock() if clock is None else clock
    _state.clock, _state.testing, _state.max_attempts = chosen, True, attempts
    try:
        yield chosen
    finally:
        _state.clock, _state.testing, _state.max_attempts = saved


# Keep pytest from collecting the context manager as a test when users import it.
test_mode.__test__ = False  # type: ignore[attr-defined]
