"""MemoryState keeps values and per-minute counters as the SharedState protocol says."""

from __future__ import annotations

from typing import Any

from regen.providers import MemoryState, SharedState


def test_memory_state_is_a_shared_state() -> None:
    assert isinstance(MemoryState(), SharedState)


async def test_update_stores_the_new_value_and_returns_the_result() -> None:
    state = MemoryState()

    def bump(value: Any | None) -> tuple[Any | None, int]:
        n = (value or {"n": 0})["n"] + 1
        return {"n": n}, n

    assert await state.update("breaker:a", bump) == 1
    assert await state.update("breaker:a", bump) == 2
    assert await state.read("breaker:") == {"breaker:a": {"n": 2}}


async def test_none_deletes_the_value() -> None:
    state = MemoryState()
    await state.update("limit:a", lambda _: ({"tokens": 1.0}, None))
    await state.update("limit:b", lambda _: ({"tokens": 2.0}, None))
    await state.update("limit:a", lambda _: (None, None))
    assert await state.read("limit:") == {"limit:b": {"tokens": 2.0}}
    assert await state.read("breaker:") == {}


async def test_counts_add_up_per_minute_bucket_and_filter_by_start() -> None:
    state = MemoryState()
    key = ("sim", "timeout", "retries")
    await state.count({key: 2, ("sim", "", "attempts"): 3}, now=600.0)
    await state.count({key: 1}, now=659.9)  # same bucket as 600
    await state.count({key: 4}, now=660.0)  # next bucket
    assert await state.counts() == {key: 7, ("sim", "", "attempts"): 3}
    assert await state.counts(since=630.0) == {key: 4}
    assert await state.counts(since=600.0) == {key: 7, ("sim", "", "attempts"): 3}


async def test_old_buckets_are_dropped_after_keep_s() -> None:
    state = MemoryState(keep_s=120.0)
    key = ("sim", "", "attempts")
    await state.count({key: 1}, now=0.0)
    await state.count({key: 1}, now=300.0)
    assert await state.counts() == {key: 1}
