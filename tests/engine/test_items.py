"""A map step's items spread across workers: every worker with room runs some, the quota
holds exactly, a dead worker's items are taken over, a stalled one's late results refused.

Each test runs on both stores (``database``); "workers" are engines of their own on the
same database (in this process, or a child process that is SIGKILLed)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.flows import shared
from engine.waiting import status_is, until
from regen.engine import (
    Engine,
    Flow,
    ItemStatus,
    RunStatus,
    Settings,
    current_provider_state,
)
from regen.retry import FakeClock, Policy
from regen.store import Event, Store

CHILD = Path(__file__).with_name("items_child.py")


@pytest.fixture
def engines(database: str, tmp_path: Path, clock: FakeClock) -> Iterator[list[Engine]]:
    """Three engines on this test's database, as three worker processes would be."""
    made = [Engine(database, home=tmp_path, settings=Settings(lease_ttl=30.0)) for _ in range(3)]
    try:
        yield made
    finally:
        for engine in made:
            engine.close()


async def _all_events(engine: Engine, run_id: str) -> list[Event]:
    events: list[Event] = []
    while page := await engine.read_events(run_id, after=events[-1].seq if events else 0):
        events.extend(page)
    return events


def _ended_once(events: list[Event]) -> collections.Counter[int]:
    """How many ``item.succeeded`` / ``item.given_up`` events each item has."""
    return collections.Counter(
        e.data["item"] for e in events if e.type in ("item.succeeded", "item.given_up")
    )


async def _work_until(
    workers: list[Engine], done: asyncio.Future[object] | asyncio.Task[object]
) -> None:
    """Run ``workers`` (each a ``regen worker``) until ``done`` completes."""
    stop = asyncio.Event()
    running = [asyncio.create_task(w.worker(stop=stop, poll=0.02, gc_interval=0)) for w in workers]
    try:
        await done
    finally:
        stop.set()
        await asyncio.gather(*running)


@pytest.mark.parametrize("helpers", [1, 2])
async def test_workers_share_the_items_of_one_big_map_step(
    engines: list[Engine], helpers: int
) -> None:
    flow = Flow("big_batch")

    @flow.map(items=lambda ctx: range(120), concurrency=4, policy=Policy(attempts=1))
    async def draw(ctx, item):
        await asyncio.sleep(0.01)
        return item * 2

    owner, *others = engines[: 1 + helpers]
    for engine in engines:
        engine.register(flow)
    run_id = (await owner.start(flow)).run.id
    executing = asyncio.create_task(owner.execute(run_id))
    await until(lambda: status_is(owner, run_id, RunStatus.RUNNING))
    await _work_until(others, executing)
    run = executing.result()

    assert run.status is RunStatus.SUCCEEDED
    items = await owner.items(run_id, "draw", limit=1000)
    assert [(i.idx, i.status, i.output) for i in items] == [
        (n, ItemStatus.SUCCEEDED, n * 2) for n in range(120)
    ]
    ran = collections.Counter(i.worker for i in items)
    assert set(ran) == {e.owner for e in engines[: 1 + helpers]}, ran  # each ran some
    events = await _all_events(owner, run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # one gapless log
    assert _ended_once(events) == dict.fromkeys(range(120), 1)
    assert (await owner.detail(run_id)).steps[0].output["succeeded"] == 120


async def test_items_a_helping_worker_runs_share_its_breakers_and_limits(
    engines: list[Engine],
) -> None:
    # A provider call in an item finds the engine's store-backed state (so every worker
    # shares one breaker and one rate limit per provider), whichever worker runs the item.
    owner, helper = engines[:2]
    seen: dict[str, set[object]] = collections.defaultdict(set)

    def resources(params: object) -> str:
        seen["resources"].add(current_provider_state())
        return "client"

    flow = Flow("shared_limits", resources=resources)

    @flow.map(items=lambda ctx: range(40), concurrency=2, policy=Policy(attempts=1))
    async def draw(ctx, item):
        await asyncio.sleep(0.01)
        seen[ctx.resources].add(current_provider_state())
        return item

    for engine in (owner, helper):
        engine.register(flow)
    run_id = (await owner.start(flow)).run.id
    executing = asyncio.create_task(owner.execute(run_id))
    await until(lambda: status_is(owner, run_id, RunStatus.RUNNING))
    await _work_until([helper], executing)

    assert executing.result().status is RunStatus.SUCCEEDED
    items = await owner.items(run_id, "draw", limit=100)
    assert {i.worker for i in items} == {owner.owner, helper.owner}
    assert seen["resources"] == seen["client"] == {owner.provider_state, helper.provider_state}


async def test_a_quota_holds_exactly_when_workers_race_for_it(engines: list[Engine]) -> None:
    flow = Flow("quota_race", params={"count": int, "succeed_every": int})

    @flow.map(
        items=lambda ctx: range(30),
        concurrency=3,
        quota="params.count",
        policy=Policy(attempts=1),
    )
    async def draw(ctx, item):
        await asyncio.sleep(0.001 * (item % 5))
        if item % ctx.params["succeed_every"]:
            raise TimeoutError("image generation timed out")
        return item

    for engine in engines:
        engine.register(flow)
    first = engines[0]
    # Quotas of 3 with 15 candidates that can succeed; one of 8 where only 5 can.
    plenty = [(await first.start(flow, {"count": 3, "succeed_every": 2})).run.id for _ in range(6)]
    scarce = (await first.start(flow, {"count": 8, "succeed_every": 6})).run.id

    async def finished() -> bool:
        runs = [await first.get_run(r) for r in [*plenty, scarce]]
        return all(r.status.finished for r in runs)

    await _work_until(engines, asyncio.ensure_future(until(finished, attempts=3000)))

    for run_id in plenty:
        counts = (await first.detail(run_id)).steps[0].output
        assert counts["succeeded"] == 3, counts  # never more
        assert counts["skipped"] + counts["given_up"] + 3 == 30
        events = await _all_events(first, run_id)
        assert sum(e.type == "item.succeeded" for e in events) == 3
        assert (await first.get_run(run_id)).status is RunStatus.SUCCEEDED
    # Never fewer while candidates remain: every one was tried.
    counts = (await first.detail(scarce)).steps[0].output
    assert (counts["succeeded"], counts["given_up"], counts["skipped"]) == (5, 25, 0)
    assert (await first.get_run(scarce)).status is RunStatus.PARTIAL


async def test_a_late_result_for_an_item_taken_over_is_refused(
    database: str, tmp_path: Path, clock: FakeClock
) -> None:
    gate, stalled = asyncio.Event(), asyncio.Event()
    mine, theirs = Flow("late"), Flow("late")  # one flow, as two processes load it

    @mine.map(items=lambda ctx: range(8), concurrency=2, policy=Policy(attempts=1))
    async def draw(ctx, item):
        await gate.wait()
        return "fresh"

    @theirs.map(items=lambda ctx: range(8), concurrency=2, policy=Policy(attempts=1), name="draw")
    async def draw_late(ctx, item):
        await stalled.wait()
        return "stale"

    owner = Engine(database, home=tmp_path, settings=Settings(lease_ttl=30.0))
    helper = Engine(database, home=tmp_path, settings=Settings(lease_ttl=5.0))
    owner.register(mine)
    helper.register(theirs)
    store: Store = helper._store
    answers: list[tuple[list[object], bool]] = []
    commit_items = store.commit_items

    async def recorded(lease, writes):  # the helper's commits, as sent and as answered
        answer = await commit_items(lease, writes)
        answers.append((list(writes), answer.ok))
        return answer

    store.commit_items = recorded  # type: ignore[method-assign]
    try:
        run_id = (await owner.start(mine)).run.id
        executing = asyncio.create_task(owner.execute(run_id))
        await until(lambda: status_is(owner, run_id, RunStatus.RUNNING))  # the owner's now
        stop = asyncio.Event()
        helping = asyncio.create_task(helper.worker(stop=stop, poll=0.02, gc_interval=0))
        held = await _held_by(owner, run_id, helper.owner)
        # The helper stalls: its heartbeat stops, and its item leases (5 s) run out.
        helper._heartbeat.close()
        clock.advance(10.0)
        gate.set()
        run = await executing  # the owner takes the stalled items over and finishes
        stalled.set()  # the helper wakes up and sends its results
        await until(lambda: any(_ends(writes) for writes, _ in answers))
        stop.set()
        await helping
        items = await owner.items(run_id, "draw")
        events = await _all_events(owner, run_id)
    finally:
        owner.close()
        helper.close()
    assert run.status is RunStatus.SUCCEEDED
    late = [ok for writes, ok in answers if _ends(writes)]
    assert late
    assert not any(late)  # every result the stalled helper sent was refused
    assert {(i.status, i.output, i.worker) for i in items} == {
        (ItemStatus.SUCCEEDED, "fresh", owner.owner)
    }
    assert held  # items the helper had, each recorded once, by the owner
    assert _ended_once(events) == dict.fromkeys(range(8), 1)


async def test_a_worker_that_cannot_load_the_flow_gives_its_items_back_at_once(
    engines: list[Engine],
) -> None:
    owner, stranger = engines[:2]  # the stranger's code has no such flow
    flow = Flow("only_here")

    @flow.map(items=lambda ctx: range(12), concurrency=2, policy=Policy(attempts=1))
    async def draw(ctx, item):
        await asyncio.sleep(0.01)
        return item

    owner.register(flow)
    run_id = (await owner.start(flow)).run.id
    executing = asyncio.create_task(owner.execute(run_id))
    await until(lambda: status_is(owner, run_id, RunStatus.RUNNING))
    # The engines' clock is stopped: an item left claimed would never lapse to the owner.
    await _work_until([stranger], asyncio.wait_for(executing, 20))

    assert executing.result().status is RunStatus.SUCCEEDED
    items = await owner.items(run_id, "draw")
    assert {(i.status, i.worker) for i in items} == {(ItemStatus.SUCCEEDED, owner.owner)}


async def test_a_worker_stopping_gives_back_the_items_it_has_not_finished(
    engines: list[Engine],
) -> None:
    owner, helper = engines[:2]
    go = asyncio.Event()
    flow = Flow("handed_back")

    @flow.map(items=lambda ctx: range(8), concurrency=2, policy=Policy(attempts=1))
    async def draw(ctx, item):
        await go.wait()
        return item

    for engine in (owner, helper):
        engine.register(flow)
    run_id = (await owner.start(flow)).run.id
    executing = asyncio.create_task(owner.execute(run_id))
    await until(lambda: status_is(owner, run_id, RunStatus.RUNNING))
    stop = asyncio.Event()
    helping = asyncio.create_task(helper.worker(stop=stop, poll=0.02, gc_interval=0))
    held = await _held_by(owner, run_id, helper.owner)
    stop.set()  # the helper shuts down with its items unfinished
    await helping
    go.set()
    # The engines' clock is stopped: without the items given back, their leases would
    # never lapse and the owner would wait for them for ever.
    run = await asyncio.wait_for(executing, 20)

    assert run.status is RunStatus.SUCCEEDED
    items = await owner.items(run_id, "draw")
    assert held
    assert {(i.status, i.worker) for i in items} == {(ItemStatus.SUCCEEDED, owner.owner)}
    assert _ended_once(await _all_events(owner, run_id)) == dict.fromkeys(range(8), 1)


async def test_a_worker_stopping_records_the_sync_calls_it_cannot_stop_instead_of_giving_them_back(
    engines: list[Engine],
) -> None:
    owner, helper = engines[:2]
    go = threading.Event()
    calls: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    flow = Flow("seen_through")

    @flow.map(items=lambda ctx: range(8), concurrency=2, policy=Policy(attempts=1))
    def draw(ctx, item):  # sync: runs in a thread, which nothing can stop
        with lock:
            calls[item] += 1
        go.wait(20)
        return item

    for engine in (owner, helper):
        engine.register(flow)
    run_id = (await owner.start(flow)).run.id
    executing = asyncio.create_task(owner.execute(run_id))
    await until(lambda: status_is(owner, run_id, RunStatus.RUNNING))
    stop = asyncio.Event()
    helping = asyncio.create_task(helper.worker(stop=stop, poll=0.02, gc_interval=0))
    held = await _held_by(owner, run_id, helper.owner)
    await until(lambda: sum(calls.values()) == 4)  # two calls in each worker's threads
    stop.set()  # the helper stops while its two calls run
    await asyncio.sleep(0.1)  # room for the owner to claim what the helper would give back
    go.set()
    await asyncio.wait_for(helping, 20)
    run = await asyncio.wait_for(executing, 20)

    assert run.status is RunStatus.SUCCEEDED
    assert calls == dict.fromkeys(range(8), 1)  # no item called twice
    items = await owner.items(run_id, "draw")
    by_helper = {i.idx for i in items if i.worker == helper.owner}
    assert len(by_helper) == 2  # its two calls, recorded by it
    assert by_helper <= set(held)
    assert {i.status for i in items} == {ItemStatus.SUCCEEDED}
    assert _ended_once(await _all_events(owner, run_id)) == dict.fromkeys(range(8), 1)


def _ends(writes: list[object]) -> bool:
    return any(type(w).__name__ == "EndItem" for w in writes)


async def _held_by(engine: Engine, run_id: str, worker: str) -> list[int]:
    """Wait until every item of the run is claimed, some by ``worker``; their indexes."""
    held: list[int] = []

    async def some() -> bool:
        items = await engine.items(run_id, "draw")
        held[:] = [i.idx for i in items if i.worker == worker]
        return len(items) == 8 and all(i.status is ItemStatus.RUNNING for i in items) and bool(held)

    await until(some)
    return held


async def test_the_items_of_a_killed_worker_are_taken_over_once_its_lease_expires(
    database: str, tmp_path: Path
) -> None:
    folder = tmp_path / "marks"
    folder.mkdir()
    env = {**os.environ, "SHARED_HANG": "1", "REGEN_LEASE_TTL_S": "1"}
    command = [sys.executable, str(CHILD), database, str(tmp_path), "engine.flows:shared"]
    with Engine(database, home=tmp_path, settings=Settings(lease_ttl=30.0)) as owner:
        run_id = (await owner.start(shared, {"folder": str(folder)})).run.id
        executing = asyncio.create_task(owner.execute(run_id))
        await until(lambda: status_is(owner, run_id, RunStatus.RUNNING))  # the owner's run
        # A worker that helps, then is killed.
        child = await asyncio.create_subprocess_exec(*command, env=env)
        try:
            await until(lambda: any(folder.glob(f"started-*-{child.pid}")), attempts=3000)
        finally:
            child.send_signal(signal.SIGKILL)
            await asyncio.wait_for(child.wait(), 30)
        (folder / "go").touch()
        run = await asyncio.wait_for(executing, 60)
        items = await owner.items(run_id, "mark")
        events = await _all_events(owner, run_id)
    killed = {int(p.name.split("-")[1]) for p in folder.glob(f"started-*-{child.pid}")}
    assert run.status is RunStatus.SUCCEEDED
    assert killed  # the child had items in flight when it died
    assert [(i.idx, i.status) for i in items] == [(n, ItemStatus.SUCCEEDED) for n in range(12)]
    assert {i.output["pid"] for i in items} == {os.getpid()}  # each finished here, once
    assert _ended_once(events) == dict.fromkeys(range(12), 1)
    started = collections.Counter(e.data["item"] for e in events if e.type == "item.started")
    # Each started here once more at most (the child's events may have died with it).
    assert set(started) == set(range(12))
    assert max(started.values()) <= 2
    assert {i.worker for i in items} == {owner.owner}


async def test_a_cancel_stops_the_items_every_worker_runs(engines: list[Engine]) -> None:
    gate = asyncio.Event()
    flow = Flow("cancelled_batch")

    @flow.map(items=lambda ctx: range(40), concurrency=2, policy=Policy(attempts=1))
    async def draw(ctx, item):
        await gate.wait()
        return item

    owner, helper = engines[:2]
    for engine in (owner, helper):
        engine.register(flow)
    run_id = (await owner.start(flow)).run.id
    executing = asyncio.create_task(owner.execute(run_id))
    await until(lambda: status_is(owner, run_id, RunStatus.RUNNING))
    stop = asyncio.Event()
    helping = asyncio.create_task(helper.worker(stop=stop, poll=0.02, gc_interval=0))

    async def both_run_items() -> bool:
        items = await owner.items(run_id, "draw", status=ItemStatus.RUNNING)
        return {i.worker for i in items} == {owner.owner, helper.owner}

    await until(both_run_items)
    await helper.cancel(run_id)  # asked from another process than the run's
    gate.set()  # the items in flight end: each worker's next safe point
    run = await executing
    stop.set()
    await helping
    counts = (await owner.detail(run_id)).items["draw"]
    assert run.status is RunStatus.CANCELLED
    assert counts["pending"] > 0  # the rest was never started
    assert counts["succeeded"] <= 16  # at most what the two workers had claimed
