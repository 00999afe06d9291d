"""The worker loop: claiming queued runs, and its periodic clean-up."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from engine.flows import linear
from engine.waiting import not_resumable, status_is, until
from regen.engine import Engine, Flow, RunStatus, StepStatus
from regen.retry import FakeClock


async def test_a_worker_cleans_up_once_every_gc_interval(
    engine: Engine, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="regen.engine")
    flow = Flow("broken")

    @flow.step()
    async def fetch(ctx):
        return [1, 2]

    @flow.step()
    async def publish(ctx):
        raise RuntimeError("the API is down")

    failed = await engine.run(flow)
    assert (await engine.detail(failed.id)).resumable
    clock.advance(25 * 3600)  # its checkpoints are past retention (24 h) now

    def cleanups() -> list[Any]:
        return [r.args[0] for r in caplog.records if r.msg.startswith("regen worker: clean-up")]

    stop = asyncio.Event()
    worker = asyncio.create_task(
        engine.worker(concurrency=1, poll=0.01, stop=stop, gc_interval=3600)
    )
    try:
        # The worker goes round its loop (it runs a queued run) but its interval has not
        # passed since it started: nothing is cleaned up yet.
        queued = (await engine.start(linear)).run.id
        await until(lambda: status_is(engine, queued, RunStatus.SUCCEEDED))
        assert (await engine.detail(failed.id)).resumable
        assert cleanups() == []

        clock.advance(3600)
        await until(lambda: not_resumable(engine, failed.id))
        await until(cleanups)  # logged once the whole clean-up is done, after the expiry
        assert [c.checkpoints_expired for c in cleanups()] == [1]
        assert (await engine.detail(failed.id)).steps[0].output is None  # the checkpoint is gone

        clock.advance(3600)  # the next interval: another clean-up, nothing left to expire
        await until(lambda: len(cleanups()) == 2)
        assert cleanups()[1].checkpoints_expired == 0
    finally:
        stop.set()
        await worker
    assert (await engine.get_run(failed.id)).status is RunStatus.FAILED  # the run itself is kept


async def test_a_worker_with_gc_interval_zero_never_cleans_up(
    engine: Engine, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="regen.engine")
    ids = [(await engine.start(linear, {"topic": t})).run.id for t in ("a", "b")]
    clock.advance(10**6)
    assert await engine.worker(poll=0.01, max_runs=2, gc_interval=0) == 2
    assert {(await engine.get_run(i)).status for i in ids} == {RunStatus.SUCCEEDED}
    assert not [r for r in caplog.records if "clean-up" in r.getMessage()]


async def test_a_stopping_worker_checkpoints_the_sync_step_it_cannot_stop_and_gives_back_the_rest(
    engine: Engine,
) -> None:
    go = threading.Event()
    calls: list[str] = []
    flow = Flow("seen_through")

    @flow.step()
    def fetch(ctx):  # sync: runs in a thread, which nothing can stop
        calls.append("fetch")
        go.wait(20)
        return "page"

    @flow.step()
    def publish(ctx):
        calls.append("publish")
        return ctx.results["fetch"] + " published"

    engine.register(flow)
    run_id = (await engine.start(flow)).run.id
    stop = asyncio.Event()
    worker = asyncio.create_task(engine.worker(concurrency=1, poll=0.01, stop=stop, gc_interval=0))
    await until(lambda: calls == ["fetch"])
    stop.set()  # the worker stops while fetch runs
    await asyncio.sleep(0.05)
    go.set()
    await asyncio.wait_for(worker, 10)

    detail = await engine.detail(run_id)
    run, steps = detail.run, {s.name: s for s in detail.steps}
    assert run.status is RunStatus.QUEUED  # given back, for the next worker
    assert steps["fetch"].status is StepStatus.SUCCEEDED
    assert steps["fetch"].output == "page"
    assert calls == ["fetch"]  # stopped at the checkpoint: publish not started

    finished = await engine.execute(run_id)
    assert finished.status is RunStatus.SUCCEEDED
    assert calls == ["fetch", "publish"]  # fetch was not called again


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"concurrency": 0}, "worker concurrency=0: expected a whole number ≥ 1"),
        ({"concurrency": 2.5}, "worker concurrency=2.5: "),
        ({"poll": 0}, "worker poll=0: expected a number of seconds > 0"),
        ({"poll": float("nan")}, "worker poll=nan: "),
        ({"max_runs": -1}, "worker max_runs=-1: expected a whole number ≥ 0, or None"),
        ({"gc_interval": -1}, "worker gc_interval=-1: expected a number of seconds ≥ 0"),
    ],
)
async def test_a_worker_refuses_settings_it_cannot_work_with(
    engine: Engine, settings: dict[str, Any], message: str
) -> None:
    queued = await engine.start(linear)
    with pytest.raises(ValueError, match=message):
        await engine.worker(**settings)
    assert (await engine.get_run(queued.run.id)).status is RunStatus.QUEUED
