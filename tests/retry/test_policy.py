from __future__ import annotations

import math

import pytest

from regen import ConfigError, GiveUp, Policy, Retryable, test_mode
from regen.retry import FakeClock


def test_defaults_are_bounded() -> None:
    """``Policy()`` gives up after 3 attempts and within 20 minutes, whatever the server says.

    Every attempt here runs to its timeout and the server asks for the longest
    ``Retry-After`` the defaults honour; a longer one ends the call at once.
    """
    policy = Policy()
    assert policy.timeout is not None
    timeout = policy.timeout
    calls = 0

    def slow_and_throttled(clock: FakeClock, retry_after: float) -> None:
        nonlocal calls
        calls += 1
        clock.advance(timeout)
        raise Retryable("throttled", kind="rate_limited", retry_after=retry_after)

    with test_mode() as clock:
        assert isinstance(clock, FakeClock)
        started = clock.monotonic()
        with pytest.raises(GiveUp) as caught:
            policy.call(slow_and_throttled, clock, policy.retry_after_max)
        elapsed = clock.monotonic() - started
    assert calls == 3
    assert len(caught.value.attempts) == 3
    assert elapsed <= 20 * 60

    calls = 0
    with test_mode() as clock:
        assert isinstance(clock, FakeClock)
        with pytest.raises(GiveUp) as caught:
            policy.call(slow_and_throttled, clock, policy.retry_after_max + 1)
    assert calls == 1
    assert caught.value.attempts[-1].reason == "retry_after_too_long"
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("settings", "mentions"),
    [
        ({"attempts": 0}, "attempts=0"),
        ({"attempts": 2.5}, "attempts=2.5"),
        ({"attempts": True}, "attempts=True"),
        ({"attempts": 10_000}, "deadline"),
        ({"timeout": 0}, "timeout=0"),
        ({"timeout": -1}, "timeout=-1"),
        ({"timeout": math.inf}, "timeout=inf"),
        ({"deadline": 0}, "deadline=0"),
        ({"wait": -1}, "wait=-1"),
        ({"multiplier": 0.5}, "multiplier=0.5"),
        ({"jitter": 2}, "jitter=2"),
        ({"wait": 10, "max_wait": 5}, "max_wait=5"),
        ({"phases": {"download": 0}}, "phases['download']"),
        ({"thread": True, "timeout": None}, "thread=True"),
    ],
)
def test_refuses_policies_that_could_misbehave(settings: dict[str, object], mentions: str) -> None:
    with pytest.raises(ConfigError, match=mentions.replace("[", r"\[").replace("]", r"\]")):
        Policy(**settings)  # type: ignore[arg-type]


def test_many_attempts_are_fine_with_a_deadline() -> None:
    assert Policy(attempts=10_000, deadline=60).attempts == 10_000


def test_exponential_backoff_grows_and_is_capped() -> None:
    policy = Policy(attempts=6, wait=1, multiplier=2, max_wait=5)
    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_fixed_waits() -> None:
    policy = Policy.fixed(2, attempts=3)
    assert [policy.backoff(n) for n in (1, 2, 3)] == [2, 2, 2]


def test_jitter_only_shortens_waits() -> None:
    policy = Policy(attempts=5, wait=4, multiplier=1, max_wait=4, jitter=0.5)
    waits = [policy.backoff(1) for _ in range(200)]
    assert all(2 <= w <= 4 for w in waits)
    assert len(set(waits)) > 1


def test_phases_are_read_only() -> None:
    policy = Policy(phases={"download": 60})
    with pytest.raises(TypeError):
        policy.phases["download"] = 1  # type: ignore[index]


def test_replace_keeps_other_settings() -> None:
    policy = Policy(attempts=2, timeout=30).replace(operation="pay")
    assert (policy.attempts, policy.timeout, policy.operation) == (2, 30, "pay")
