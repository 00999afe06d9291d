from __future__ import annotations

import time

import pytest

from regen import ConfigError, GiveUp, Policy, test_mode
from regen.retry import Clock


def _always_reset() -> None:
    raise ConnectionResetError


def test_test_mode_skips_real_sleeps_and_caps_attempts() -> None:
    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError

    started = time.monotonic()
    with test_mode(attempts=2) as clock, pytest.raises(GiveUp):
        Policy(attempts=10, wait=30, multiplier=1, max_wait=30).call(failing)
    assert time.monotonic() - started < 0.5
    assert calls == 2
    assert clock.sleeps == [30]  # type: ignore[attr-defined]


def test_test_mode_is_restored_on_exit() -> None:
    with test_mode(attempts=1):
        pass
    calls = 0

    def failing() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError
        return "ok"

    assert Policy(attempts=3, wait=0).call(failing) == "ok"
    assert calls == 3


def test_test_mode_is_restored_after_an_error() -> None:
    with pytest.raises(RuntimeError), test_mode(attempts=1):
        raise RuntimeError
    calls = 0

    def fails_twice() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError
        return "ok"

    # The attempt cap is gone with the block, even though the block raised.
    assert Policy(attempts=3, wait=0).call(fails_twice) == "ok"
    assert calls == 3
    assert type(__import__("regen.retry._state", fromlist=["clock"]).clock) is Clock


def test_test_mode_refuses_zero_attempts() -> None:
    with pytest.raises(ConfigError), test_mode(attempts=0):
        pass
