"""The shared token bucket as pure functions, and this process's adaptive concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regen.foundation import ConfigError
from regen.providers import AdaptiveLimit, LimitSettings
from regen.providers._limiter import spend, take


def test_a_full_bucket_grants_the_burst_at_once_then_spaces_calls_by_the_rate() -> None:
    limit = LimitSettings(rps=10, burst=3)
    value: Any = None
    waits = []
    for _ in range(5):
        value, (granted, wait) = take(value, 100.0, limit, max_wait=10.0)
        assert granted
        waits.append(round(wait, 6))
    assert waits == [0.0, 0.0, 0.0, 0.1, 0.2]  # reservations queue in order


def test_a_call_that_cannot_wait_so_long_reserves_nothing() -> None:
    limit = LimitSettings(rps=1, burst=1)
    value, _ = take(None, 100.0, limit, max_wait=10.0)
    before = value
    value, (granted, wait) = take(value, 100.0, limit, max_wait=0.5)
    assert not granted
    assert wait == pytest.approx(1.0)
    assert value == before


def test_tokens_per_minute_hold_requests_while_in_debt() -> None:
    limit = LimitSettings(tpm=600)  # 10 tokens a second
    value = spend(None, 100.0, limit, 700)  # 100 into debt
    _, (granted, wait) = take(value, 100.0, limit, max_wait=60.0)
    assert granted
    assert wait == pytest.approx(10.0)
    _, (granted, wait) = take(value, 111.0, limit, max_wait=60.0)
    assert granted
    assert wait == 0.0


@settings(max_examples=100, deadline=None)
@given(
    rps=st.floats(0.5, 50),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=80),
)
def test_granted_calls_never_run_faster_than_the_rate_plus_the_burst(
    rps: float, burst: int, gaps: list[float]
) -> None:
    limit = LimitSettings(rps=rps, burst=burst)
    value: Any = None
    now = 0.0
    starts = []
    for gap in gaps:
        now += gap
        value, (granted, wait) = take(value, now, limit, max_wait=1e9)
        assert granted
        starts.append(now + wait)
    starts.sort()
    for i, start in enumerate(starts):
        # Within any span from the first call, at most burst + span × rps calls start.
        assert i + 1 <= burst + (start - starts[0]) * rps + 1e-6


@settings(max_examples=100, deadline=None)
@given(
    rps=st.floats(0.5, 50),
    burst=st.integers(1, 20),
    calls=st.lists(st.tuples(st.floats(0, 0.5), st.floats(0, 0.05)), min_size=2, max_size=80),
)
def test_callers_whose_clocks_were_read_out_of_turn_never_run_faster_than_the_rate(
    rps: float, burst: int, calls: list[tuple[float, float]]
) -> None:
    # Workers read the time, then wait their turn at the shared value: a caller may
    # take its token after one that read a later time.
    limit = LimitSettings(rps=rps, burst=burst)
    value: Any = None
    clock = 0.0
    starts = []
    for gap, late in calls:
        clock += gap
        now = max(0.0, clock - late)  # read `late` seconds before its turn came
        value, (granted, wait) = take(value, now, limit, max_wait=1e9)
        assert granted
        assert wait >= 0
        starts.append(now + wait)
    starts.sort()
    for i, start in enumerate(starts):
        assert i + 1 <= burst + (start - starts[0]) * rps + 1e-6


def test_a_caller_that_read_an_earlier_time_does_not_set_the_bucket_back() -> None:
    limit = LimitSettings(rps=10, burst=1)
    value, (_, first) = take(None, 100.0, limit, max_wait=10.0)
    value, (_, late) = take(value, 99.5, limit, max_wait=10.0)  # its clock was read earlier
    value, (_, after) = take(value, 100.0, limit, max_wait=10.0)
    assert (first, late) == (0.0, pytest.approx(0.6))  # its token at 100.1, 0.6 s after 99.5
    assert after == pytest.approx(0.2)  # the next token at 100.2: no refill counted twice


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rps": 0}, "rps"),
        ({"burst": 5}, "burst needs rps"),
        ({"rps": 1, "burst": 0}, "burst"),
        ({"tpm": -1}, "tpm"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_bad_limits_name_the_setting(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LimitSettings(**kwargs)


async def test_aimd_halves_on_a_rate_limit_and_grows_back_by_one_per_window() -> None:
    limit = AdaptiveLimit(8)
    started = [await limit.acquire(1.0) for _ in range(8)]
    await limit.release(started[0], rate_limited=True, retry_after=None)
    assert limit.limit == 4
    # Calls of the same burst (started before the decrease) do not halve it again.
    await limit.release(started[1], rate_limited=True, retry_after=None)
    assert limit.limit == 4
    for s in started[2:]:
        await limit.release(s, rate_limited=False, retry_after=None)
    assert limit.limit == 5  # four successes: one window of the limit of 4
    again = await limit.acquire(1.0)
    await limit.release(again, rate_limited=True, retry_after=None)
    assert limit.limit == 2.5


async def test_aimd_holds_new_calls_past_the_limit_until_one_ends() -> None:
    limit = AdaptiveLimit(2)
    first = await limit.acquire(1.0)
    await limit.acquire(1.0)
    waiting = asyncio.create_task(limit.acquire(2.0))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await limit.release(first, rate_limited=False, retry_after=None)
    await asyncio.wait_for(waiting, 1.0)
    with pytest.raises(TimeoutError):
        await limit.acquire(0.05)


async def test_aimd_honours_retry_after_for_new_calls() -> None:
    limit = AdaptiveLimit(4)
    started = await limit.acquire(1.0)
    await limit.release(started, rate_limited=True, retry_after=30.0)
    with pytest.raises(TimeoutError):
        await limit.acquire(1.0)  # would have to wait 30 s


async def test_without_a_ceiling_the_first_rate_limit_sets_half_the_calls_in_flight() -> None:
    limit = AdaptiveLimit(None)
    started = [await limit.acquire(1.0) for _ in range(6)]
    await limit.release(started[0], rate_limited=True, retry_after=None)
    assert limit.limit == 3
