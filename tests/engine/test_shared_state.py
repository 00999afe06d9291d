"""The engine's provider state: breaker and limit values and call counters kept in its
store, shared by every engine on the database; calls the engine saves are counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regen.engine import (
    Cache,
    Engine,
    Flow,
    RunStatus,
    Settings,
    StoreState,
    current_provider_state,
)
from regen.providers import SharedState
from regen.retry import FakeClock, Policy
from regen.store import open_store


def _opened(value: Any) -> tuple[Any, str]:
    state = dict(value or {"state": "closed", "failures": 0})
    state["failures"] += 1
    if state["failures"] >= 2:
        state["state"] = "open"
    return state, state["state"]


async def test_a_breaker_opened_through_one_engine_is_open_for_another(
    engine: Engine, database: str, tmp_path: Path
) -> None:
    assert isinstance(engine.provider_state, SharedState)
    other = Engine(database, home=tmp_path)
    try:
        assert await engine.provider_state.update("breaker:sim", _opened) == "closed"
        assert await other.provider_state.update("breaker:sim", _opened) == "open"
        assert await engine.provider_state.read("breaker:") == {
            "breaker:sim": {"state": "open", "failures": 2}
        }
        await other.provider_state.update("breaker:sim", lambda value: (None, None))
        assert await engine.provider_state.read("breaker:") == {}
    finally:
        await other.aclose()


async def test_a_value_that_is_not_json_is_refused_and_nothing_is_written(engine: Engine) -> None:
    with pytest.raises(TypeError, match=r"'limit:sim'.*not JSON-able"):
        await engine.provider_state.update("limit:sim", lambda value: ({1, 2}, None))
    assert await engine.provider_state.read("limit:") == {}


async def test_counts_are_kept_in_memory_until_a_flush_then_every_engine_sees_them(
    engine: Engine, database: str, clock: FakeClock
) -> None:
    state = StoreState(open_store(database), flush_every=3600)
    try:
        now = clock.wall()
        await state.count({("sim", "timeout", "retries"): 2, ("sim", "", "attempts"): 3}, now)
        await state.count({("sim", "", "attempts"): 1}, now + 120)
        assert await engine.provider_state.counts() == {}  # not written yet
        assert await state.counts() == {
            ("sim", "timeout", "retries"): 2,
            ("sim", "", "attempts"): 4,
        }
        assert await engine.provider_state.counts(since=now + 60) == {("sim", "", "attempts"): 1}
    finally:
        await state.flush()


async def test_counts_are_written_once_due_without_waiting_for_a_flush(
    engine: Engine, database: str, clock: FakeClock
) -> None:
    store = open_store(database)
    state = StoreState(store, flush_every=0.0)
    try:
        await state.count({("sim", "", "attempts"): 1}, clock.wall())
        assert await engine.provider_state.counts() == {("sim", "", "attempts"): 1}
        batched = StoreState(store, flush_every=3600, flush_at=2)
        await batched.count({("sim", "", "attempts"): 1}, clock.wall())
        await batched.count({("sim", "", "retries"): 1}, clock.wall())
        assert await engine.provider_state.counts() == {
            ("sim", "", "attempts"): 2,
            ("sim", "", "retries"): 1,
        }
    finally:
        await store.close()


async def test_steps_and_items_kept_by_their_checkpoints_are_counted_as_saved_calls(
    engine: Engine,
) -> None:
    broken = {"publish": 2, "b": 1}
    flow = Flow("saved", params={"items": list})

    @flow.step()
    async def fetch(ctx):
        return 1

    @flow.map(items="params.items", policy=Policy(attempts=1, timeout=None))
    async def draw(ctx, item):
        if broken.get(item, 0):
            broken[item] -= 1
            raise ValueError(f"{item} broke")
        return item

    @flow.step()
    async def publish(ctx):
        if broken["publish"]:
            broken["publish"] -= 1
            raise RuntimeError("publish broke")
        return "ok"

    run = await engine.run(flow, {"items": ["a", "b", "c"]})
    assert run.status is RunStatus.FAILED
    assert await engine.provider_state.counts() == {}  # nothing was skipped yet
    await engine.retry(run.id)
    assert (await engine.execute(run.id)).status is RunStatus.FAILED  # publish broke
    # The retry kept fetch and the two items that had succeeded (a, c).
    assert await engine.provider_state.counts() == {("", "", "saved_by_checkpoint"): 3}
    await engine.retry(run.id)
    assert (await engine.execute(run.id)).status is RunStatus.SUCCEEDED
    # fetch and draw kept whole this time.
    assert await engine.provider_state.counts() == {("", "", "saved_by_checkpoint"): 5}


async def test_result_cache_hits_are_counted_as_saved_calls(engine: Engine) -> None:
    flow = Flow("cached_counts", params={"prompts": list})

    @flow.step(cache=Cache(key=lambda ctx: "same"))
    async def plan(ctx):
        return "plan"

    @flow.map(items="params.prompts", cache=True, policy=Policy(attempts=1, timeout=None))
    async def image(ctx, prompt):
        return f"img:{prompt}"

    await engine.run(flow, {"prompts": ["cat", "dog"]})
    assert await engine.provider_state.counts() == {}
    await engine.run(flow, {"prompts": ["cat", "bird"]})
    assert await engine.provider_state.counts() == {("", "", "saved_by_cache"): 2}


async def test_steps_and_resources_reach_the_engines_state_while_a_run_executes(
    engine: Engine,
) -> None:
    seen: list[Any] = []

    def resources(params: Any) -> Any:
        seen.append(current_provider_state())
        return "resources"

    flow = Flow("states", resources=resources)

    @flow.step()
    async def look(ctx):
        seen.extend([ctx.provider_state, current_provider_state()])
        return 0

    @flow.step()
    def look_in_a_thread(ctx):
        seen.append(current_provider_state())

    assert (await engine.run(flow)).status is RunStatus.SUCCEEDED
    assert seen == [engine.provider_state] * 4
    assert current_provider_state() is None


async def test_the_clean_up_drops_counters_past_their_retention(
    database: str, tmp_path: Path, clock: FakeClock
) -> None:
    engine = Engine(database, home=tmp_path, settings=Settings(stats_retention_days=1))
    try:
        now = clock.wall()
        await engine.provider_state.count({("sim", "", "attempts"): 1}, now - 2 * 86400)
        await engine.provider_state.count({("sim", "", "attempts"): 2}, now - 3600)
        assert (await engine.gc()).counts_deleted == 1
        assert await engine.provider_state.counts() == {("sim", "", "attempts"): 2}
    finally:
        await engine.aclose()
