"""Runs of plain steps: checkpoints, retries, automatic retries, cancel, keys, detail, events."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from engine.flows import linear
from engine.waiting import status_is, until
from regen.engine import (
    Cache,
    Engine,
    EngineError,
    Flow,
    InvalidTransition,
    ParamsError,
    RunExists,
    RunStatus,
    Settings,
    StepStatus,
)
from regen.retry import FakeClock, Policy
from regen.store import EndStep, Lease, SQLiteStore, StartStep, Store


def pipeline(calls: list[str], fail: dict[str, int], *, max_retries: int = 0) -> Flow:
    """Seed 003's five steps; ``fail[name]`` makes that step fail that many more times."""
    flow = Flow("papers", max_retries=max_retries, retry_delay=30.0)

    def make(name: str) -> Any:
        async def step(ctx: Any) -> Any:
            calls.append(name)
            if fail.get(name, 0) > 0:
                fail[name] -= 1
                raise RuntimeError(f"{name} broke")
            earlier = list(ctx.results)
            return {"step": name, "saw": earlier}

        step.__name__ = name
        return step

    for name in ("fetch_papers", "openai_analyze", "render_images", "build_payload", "publish_mcp"):
        flow.step()(make(name))
    return flow


async def test_steps_run_in_order_and_each_result_is_checkpointed(engine: Engine) -> None:
    calls: list[str] = []
    run = await engine.run(pipeline(calls, {}))
    assert run.status is RunStatus.SUCCEEDED
    detail = await engine.detail(run.id)
    assert [s.status for s in detail.steps] == [StepStatus.SUCCEEDED] * 5
    outputs = detail.to_dict()["checkpoint"]["step_outputs"]
    assert outputs["build_payload"]["output"]["saw"] == [
        "fetch_papers",
        "openai_analyze",
        "render_images",
    ]
    assert all(o["timestamp"] is not None for o in outputs.values())


async def test_retry_resumes_from_the_failed_step_keeping_earlier_results(engine: Engine) -> None:
    calls: list[str] = []
    flow = pipeline(calls, {"render_images": 1})
    run = await engine.run(flow)
    assert run.status is RunStatus.FAILED
    detail = await engine.detail(run.id)
    assert detail.failed_step == "render_images"
    assert detail.last_successful_step == "openai_analyze"
    assert detail.resumable
    assert detail.run.error is not None
    assert "render_images broke" in detail.run.error["message"]
    calls.clear()
    await engine.retry(run.id)
    run = await engine.execute(run.id)
    assert run.status is RunStatus.SUCCEEDED
    assert calls == ["render_images", "build_payload", "publish_mcp"]
    assert run.retry_count == 1


async def test_retry_from_a_named_step_reruns_it_and_later_ones(engine: Engine) -> None:
    calls: list[str] = []
    flow = pipeline(calls, {})
    run = await engine.run(flow)
    calls.clear()
    await engine.retry(run.id, from_step="render_images")
    run = await engine.execute(run.id)
    assert run.status is RunStatus.SUCCEEDED
    assert calls == ["render_images", "build_payload", "publish_mcp"]
    with pytest.raises(InvalidTransition, match="no step named 'nope'"):
        await engine.retry(run.id, from_step="nope")


async def test_a_retried_step_is_never_served_from_the_cache(engine: Engine) -> None:
    count = {"n": 0}
    flow = Flow("cached")

    @flow.step(cache=Cache(key=lambda ctx: "same"))
    async def expensive(ctx):
        count["n"] += 1
        return count["n"]

    first = await engine.run(flow)
    second = await engine.run(flow)
    assert count["n"] == 1  # identical inputs: the second run reused the result
    assert (await engine.detail(second.id)).steps[0].output == 1
    await engine.retry(first.id, from_step="expensive")
    await engine.execute(first.id)
    assert count["n"] == 2
    assert (await engine.detail(first.id)).steps[0].output == 2


async def test_a_cached_result_expires_after_its_ttl(engine: Engine, clock: FakeClock) -> None:
    count = {"n": 0}
    flow = Flow("ttl")

    @flow.step(cache=Cache(key=lambda ctx: "same", ttl=60))
    async def expensive(ctx):
        count["n"] += 1
        return count["n"]

    await engine.run(flow)
    clock.advance(59)
    reused = await engine.run(flow)
    assert count["n"] == 1
    assert (await engine.detail(reused.id)).steps[0].output == 1
    clock.advance(2)  # 61 s after the entry was written: expired
    fresh = await engine.run(flow)
    assert count["n"] == 2
    assert (await engine.detail(fresh.id)).steps[0].output == 2
    ended = [e.data for e in await engine.read_events(fresh.id) if e.type == "step.succeeded"]
    assert "cached" not in ended[0]
    await engine.run(flow)  # the new result is reused for its own 60 s
    assert count["n"] == 2
    clock.advance(61)
    assert (await engine.gc()).cache_deleted == 1  # the clean-up drops the expired entry


async def test_changing_a_steps_version_misses_the_cache(engine: Engine) -> None:
    calls: list[tuple[str, int]] = []

    def deployed(version: int) -> Flow:
        flow = Flow("versioned", params={"prompts": list})

        @flow.step(cache=True, version=version)
        async def outline(ctx):
            calls.append(("outline", version))
            return f"outline v{version}"

        @flow.map(
            items="params.prompts",
            cache=True,
            version=version,
            policy=Policy(attempts=1, timeout=None),
        )
        async def image(ctx, prompt):
            calls.append((prompt, version))
            return f"{prompt} v{version}"

        return flow

    params = {"prompts": ["cat"]}
    v1 = deployed(1)
    await engine.run(v1, params)
    await engine.run(v1, params)
    assert calls == [("outline", 1), ("cat", 1)]  # the second run was served from the cache
    # The same flow and step names, a new version: a new process runs it on the same store.
    async with Engine(engine.location, home=engine.home, settings=engine.settings) as upgraded:
        run = await upgraded.run(deployed(2), params)
        steps = (await upgraded.detail(run.id)).steps
        items = await upgraded.items(run.id, "image")
    assert calls == [("outline", 1), ("cat", 1), ("outline", 2), ("cat", 2)]
    assert steps[0].output == "outline v2"
    assert [(i.output, i.cached) for i in items] == [("cat v2", False)]


async def test_automatic_retries_wait_and_resume_then_stop(
    engine: Engine, clock: FakeClock
) -> None:
    calls: list[str] = []
    flow = pipeline(calls, {"build_payload": 2}, max_retries=3)
    run = await engine.run(flow)
    assert run.status is RunStatus.SUCCEEDED
    assert run.retry_count == 2
    assert [s for s in clock.sleeps if s == 30.0] == [30.0, 30.0]
    assert calls.count("fetch_papers") == 1  # resumed from the failed step each time


async def test_automatic_retries_give_up_after_max_retries(engine: Engine) -> None:
    flow = pipeline([], {"publish_mcp": 10}, max_retries=3)
    run = await engine.run(flow)
    assert run.status is RunStatus.FAILED
    assert run.retry_count == 3
    assert run.retry_at is None
    assert (await engine.detail(run.id)).resumable


async def test_automatic_retries_can_be_switched_off(engine: Engine) -> None:
    flow = pipeline([], {"publish_mcp": 1}, max_retries=3)
    run = await engine.run(flow, max_retries=0)
    assert run.status is RunStatus.FAILED
    assert run.retry_count == 0


async def test_automatic_retries_out_of_bounds_at_start_create_no_run(engine: Engine) -> None:
    flow = pipeline([], {})
    with pytest.raises(EngineError, match="flow 'papers': retry_delay=1e\\+308: expected"):
        await engine.start(flow, retry_delay=1e308)
    with pytest.raises(EngineError, match="flow 'papers': max_retries=10001: expected"):
        await engine.start(flow, max_retries=10_001)
    assert await engine.list_runs() == []


async def test_manual_retry_replaces_a_pending_automatic_retry(engine: Engine) -> None:
    flow = pipeline([], {"publish_mcp": 1}, max_retries=3)
    started = await engine.start(flow)
    run = await engine.execute(started.run.id, follow_retries=False)
    assert run.status is RunStatus.FAILED
    assert run.retry_at is not None
    run = await engine.retry(run.id)
    assert run.status is RunStatus.QUEUED
    assert run.retry_at is None
    assert run.retry_count == 1
    with pytest.raises(InvalidTransition, match="already queued"):
        await engine.retry(run.id)  # a double retry is refused
    run = await engine.execute(run.id)
    assert run.status is RunStatus.SUCCEEDED
    assert run.retry_count == 1


async def test_retry_of_a_running_run_is_refused(engine: Engine) -> None:
    gate = asyncio.Event()
    flow = Flow("slow")

    @flow.step()
    async def wait(ctx):
        await gate.wait()

    started = await engine.start(flow)
    task = asyncio.create_task(engine.execute(started.run.id))
    await until(lambda: status_is(engine, started.run.id, RunStatus.RUNNING))
    with pytest.raises(InvalidTransition, match="is running"):
        await engine.retry(started.run.id)
    again = await engine.execute(started.run.id)  # never two executions of one run
    assert again.status is RunStatus.RUNNING
    gate.set()
    assert (await task).status is RunStatus.SUCCEEDED


async def test_cancel_stops_a_running_run_at_the_next_safe_point(engine: Engine) -> None:
    gate = asyncio.Event()
    calls: list[str] = []
    flow = Flow("cancellable")

    @flow.step()
    async def first(ctx):
        calls.append("first")
        await gate.wait()

    @flow.step()
    async def second(ctx):
        calls.append("second")

    started = await engine.start(flow)
    task = asyncio.create_task(engine.execute(started.run.id))
    await until(lambda: bool(calls))
    await engine.cancel(started.run.id)
    gate.set()
    run = await task
    assert run.status is RunStatus.CANCELLED
    assert calls == ["first"]
    assert [s.status for s in (await engine.detail(run.id)).steps] == [
        StepStatus.SUCCEEDED,
        StepStatus.SKIPPED,
    ]
    events = await engine.read_events(run.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [(e.type, e.data) for e in events[-2:]] == [
        ("step.skipped", {"step": "second"}),
        ("run.cancelled", {}),
    ]


async def test_a_cancel_seen_during_the_last_step_lets_it_finish_and_says_so(
    database: str, tmp_path: Path
) -> None:
    flow = Flow("cancel_last")

    @flow.step()
    async def only(ctx):
        await until(lambda: ctx.cancelled)  # the heartbeat brings the request
        return "done anyway"

    with Engine(database, home=tmp_path, settings=Settings(lease_ttl=0.3)) as engine:
        started = await engine.start(flow)
        task = asyncio.create_task(engine.execute(started.run.id))
        await until(lambda: status_is(engine, started.run.id, RunStatus.RUNNING))
        await engine.cancel(started.run.id)
        run = await task
        assert run.status is RunStatus.SUCCEEDED
        logs = [e.data for e in await engine.read_events(run.id) if e.type == "log"]
        assert logs[-1]["level"] == "warning"
        assert "cancel requested during the last step, which finished" in logs[-1]["message"]


async def test_cancel_of_a_queued_run_is_immediate(engine: Engine) -> None:
    started = await engine.start(pipeline([], {}))
    run = await engine.cancel(started.run.id)
    assert run.status is RunStatus.CANCELLED
    assert {s.status for s in (await engine.detail(run.id)).steps} == {StepStatus.SKIPPED}
    events = await engine.read_events(run.id)
    assert [e.seq for e in events] == list(range(1, 8))
    assert [e.type for e in events] == ["run.queued", *["step.skipped"] * 5, "run.cancelled"]
    assert [e.data["step"] for e in events[1:6]] == [
        "fetch_papers",
        "openai_analyze",
        "render_images",
        "build_payload",
        "publish_mcp",
    ]
    with pytest.raises(InvalidTransition, match="already finished"):
        await engine.cancel(run.id)


async def test_cancel_during_a_map_step_fails_it_and_skips_the_rest(engine: Engine) -> None:
    gate = asyncio.Event()
    flow = Flow("cancel_map")

    @flow.map(items=lambda ctx: range(4), concurrency=1, policy=Policy(attempts=1, timeout=None))
    async def draw(ctx, item):
        await gate.wait()
        return item

    @flow.step()
    async def publish(ctx): ...

    started = await engine.start(flow)
    task = asyncio.create_task(engine.execute(started.run.id))
    await until(lambda: engine.items(started.run.id, "draw"))
    await engine.cancel(started.run.id)
    gate.set()
    run = await task
    assert run.status is RunStatus.CANCELLED
    steps = (await engine.detail(run.id)).steps
    assert [s.status for s in steps] == [StepStatus.FAILED, StepStatus.SKIPPED]
    events = await engine.read_events(run.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    closed = [(e.type, e.data["step"]) for e in events if e.type in ("step.failed", "step.skipped")]
    assert closed == [("step.failed", "draw"), ("step.skipped", "publish")]
    failed = next(e for e in events if e.type == "step.failed")
    assert failed.data["error"]["type"] == "Cancelled"
    assert events[-1].type == "run.cancelled"


async def test_starting_with_a_business_key_returns_the_existing_run(engine: Engine) -> None:
    flow = pipeline([], {"fetch_papers": 1})
    a = await engine.start(flow, key="novel:1:chapter:3")
    b = await engine.start(flow, key="novel:1:chapter:3")
    assert a.created
    assert not b.created
    assert a.run.id == b.run.id
    run = await engine.execute(a.run.id)
    assert run.status is RunStatus.FAILED
    with pytest.raises(RunExists, match="failed"):
        await engine.start(flow, key="novel:1:chapter:3", on_failed="refuse")
    again = await engine.start(flow, key="novel:1:chapter:3", on_failed="retry")
    assert again.retried
    assert again.run.status is RunStatus.QUEUED
    other = await engine.start(flow, key="novel:1:chapter:4")
    assert other.created


async def test_a_flow_makes_the_business_key_of_a_run_started_without_one(
    engine: Engine,
) -> None:
    flow = Flow("digest", params={"day": date}, key=lambda p: f"digest:{p['day']:%Y%m%d}")

    @flow.step()
    async def fetch(ctx): ...

    a = await engine.start(flow, {"day": "2025-12-29"})
    b = await engine.start(flow, {"day": date(2025, 12, 29)})
    assert a.created
    assert not b.created
    assert a.run.id == b.run.id
    assert a.run.business_key == "digest:20251229"
    found = await engine.find_run(flow, "digest:20251229")
    assert found is not None
    assert found.id == a.run.id
    given = await engine.start(flow, {"day": "2025-12-29"}, key="by-hand")  # a key given wins
    assert given.created
    assert given.run.business_key == "by-hand"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (lambda p: p["nope"], r"no business key for these params: KeyError: 'nope'"),
        (lambda p: "", "its key function gave ''; expected non-empty text"),
        (lambda p: 7, "its key function gave 7; expected non-empty text"),
    ],
)
async def test_a_flow_key_that_gives_no_key_is_refused_and_creates_no_run(
    engine: Engine, key: Any, expected: str
) -> None:
    flow = Flow("digest", params={"day": date}, key=key)

    @flow.step()
    async def fetch(ctx): ...

    with pytest.raises(ParamsError, match=f"flow 'digest': {expected}"):
        await engine.start(flow, {"day": "2025-12-29"})
    assert await engine.list_runs() == []


async def test_a_business_key_with_a_nul_character_is_refused_on_every_store(
    engine: Engine,
) -> None:
    with pytest.raises(EngineError, match="NUL character"):
        await engine.start(pipeline([], {}), key="chapter\x003")
    assert await engine.list_runs() == []


async def test_a_negative_page_size_is_refused_on_every_store(engine: Engine) -> None:
    run = (await engine.start(pipeline([], {}))).run
    reads = [
        engine.list_runs(limit=-1),
        engine.read_events(run.id, limit=-1),
        engine.read_all_events(limit=-1),
        engine.items(run.id, "search", limit=-1),
    ]
    for read in reads:
        with pytest.raises(ValueError, match="limit=-1: expected a whole number ≥ 0"):
            await read
    assert await engine.list_runs(limit=0) == []
    assert [r.id for r in await engine.list_runs(limit=1)] == [run.id]


def test_one_run_per_key_under_concurrent_starts(engine: Engine) -> None:

    flow = pipeline([], {})
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: engine.sync.start(flow, key="k").run.id, range(32)))
    assert len(ids) == 1


async def test_idempotency_keys_are_stable_per_run_and_step(engine: Engine) -> None:
    run = await engine.run(linear)
    key = (await engine.detail(run.id)).steps[2].output["key"]
    assert key == f"{run.id}/publish"


async def test_events_are_numbered_and_can_be_followed(engine: Engine) -> None:
    run = await engine.run(pipeline([], {}))
    events = await engine.read_events(run.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    types = [e.type for e in events]
    assert types[:3] == ["run.queued", "run.started", "step.started"]
    assert types[-1] == "run.succeeded"
    assert types.count("step.succeeded") == 5
    tail = [e async for e in engine.events(run.id, after=events[-3].seq)]
    assert [e.seq for e in tail] == [events[-2].seq, events[-1].seq]


async def test_a_follower_sees_events_as_they_are_written(engine: Engine) -> None:
    gate = asyncio.Event()
    flow = Flow("live")

    @flow.step()
    async def talk(ctx):
        ctx.emit("stage_update", {"stage": "image_generation"})
        await gate.wait()
        ctx.log("done")

    started = await engine.start(flow)
    seen: list[str] = []

    async def reader() -> None:
        async for event in engine.events(started.run.id, follow=True, poll=0.05):
            seen.append(event.type)
            if event.type == "stage_update":
                gate.set()

    task = asyncio.create_task(engine.execute(started.run.id))
    await asyncio.wait_for(reader(), 10)
    await task
    assert seen[-1] == "run.succeeded"
    assert "stage_update" in seen
    assert "log" in seen


async def test_apps_cannot_emit_the_engines_own_event_types(engine: Engine) -> None:
    flow = Flow("rude")

    @flow.step()
    async def s(ctx):
        ctx.emit("run.succeeded", {})

    run = await engine.run(flow)
    assert run.status is RunStatus.FAILED
    assert "written by the engine" in run.error["message"]


async def test_a_sync_step_runs_in_a_thread(engine: Engine) -> None:

    flow = Flow("threads")

    @flow.step()
    def where(ctx):
        return threading.current_thread().name

    run = await engine.run(flow)
    assert (await engine.detail(run.id)).steps[0].output.startswith("regen-step")


async def test_a_non_json_result_fails_the_step_clearly(engine: Engine) -> None:
    flow = Flow("bytes")

    @flow.step()
    async def s(ctx):
        return b"\x89PNG"

    run = await engine.run(flow)
    assert run.status is RunStatus.FAILED
    assert "ctx.artifacts.put" in run.error["message"]


async def test_worker_runs_queued_runs(engine: Engine) -> None:
    ids = [(await engine.start(linear, {"topic": t})).run.id for t in ("a", "b", "c")]
    engine.registry = type(engine.registry)()  # a fresh process: only the recorded refs
    done = await engine.worker(concurrency=2, poll=0.01, max_runs=3)
    assert done == 3
    assert {(await engine.get_run(i)).status for i in ids} == {RunStatus.SUCCEEDED}


async def _claimed_by_a_process_that_dies(store: Store, clock: FakeClock, run_id: str) -> Lease:
    """The run claimed by another process, which checkpoints its first step and dies: its
    lease (30 s) is not renewed."""
    claimed = await store.claim("dead-process", 30.0, clock.wall(), run_id=run_id)
    assert claimed is not None
    await store.commit(
        claimed.lease,
        [
            StartStep(0, clock.wall()),
            EndStep(0, StepStatus.SUCCEEDED, clock.wall(), '{"step":"fetch_papers"}'),
        ],
    )
    return claimed.lease


async def test_an_expired_lease_lets_another_process_take_over(
    engine: Engine, clock: FakeClock, other_store: SQLiteStore
) -> None:
    calls: list[str] = []
    flow = pipeline(calls, {})
    started = await engine.start(flow)
    claimed = await _claimed_by_a_process_that_dies(other_store, clock, started.run.id)
    assert (await engine.execute(started.run.id)).status is RunStatus.RUNNING  # still leased
    clock.advance(31.0)
    run = await engine.execute(started.run.id)
    assert run.status is RunStatus.SUCCEEDED
    assert "fetch_papers" not in calls
    # The old holder can no longer write.
    result = await other_store.commit(claimed, [StartStep(1, clock.wall())])
    assert not result.ok
    starts = [e.data for e in await engine.read_events(run.id) if e.type == "run.started"]
    assert starts[-1]["resumed"] is True


async def test_a_keyed_run_followed_elsewhere_is_taken_over_when_that_process_dies(
    engine: Engine, clock: FakeClock, other_store: SQLiteStore
) -> None:
    calls: list[str] = []
    flow = pipeline(calls, {})
    started = await engine.start(flow, key="2025-12-29")
    await _claimed_by_a_process_that_dies(other_store, clock, started.run.id)
    # A second start of the key follows the run while its lease holds...
    following = asyncio.create_task(engine.run(flow, key="2025-12-29"))
    await asyncio.sleep(0.6)
    assert not following.done()
    # ...and takes it over once the lease has expired: it does not wait forever.
    clock.advance(31.0)
    run = await asyncio.wait_for(following, 10)
    assert run.status is RunStatus.SUCCEEDED
    assert "fetch_papers" not in calls


async def test_retention_deletes_checkpoints_then_runs(engine: Engine, clock: FakeClock) -> None:
    run = await engine.run(pipeline([], {"publish_mcp": 1}))
    assert (await engine.detail(run.id)).resumable
    counts = await engine.gc()
    assert counts.checkpoints_expired == 0
    clock.advance(25 * 3600)
    counts = await engine.gc()
    assert counts.checkpoints_expired == 1
    detail = await engine.detail(run.id)
    assert not detail.resumable
    assert all(s.output is None for s in detail.steps)
    with pytest.raises(InvalidTransition, match="checkpoints were deleted"):
        await engine.retry(run.id)
    clock.advance(31 * 86400)
    assert (await engine.gc()).runs_deleted == 1
    assert await engine.list_runs() == []


async def test_running_runs_are_never_cleaned_up(
    engine: Engine, clock: FakeClock, other_store: SQLiteStore
) -> None:
    started = await engine.start(pipeline([], {}))
    await other_store.claim("other", 10**9, clock.wall(), run_id=started.run.id)
    clock.advance(100 * 86400)
    await engine.gc()
    assert (await engine.get_run(started.run.id)).status is RunStatus.RUNNING
