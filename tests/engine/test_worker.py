"""The worker loop: claiming queued runs, and its periodic clean-up."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from engine.flows import linear
from engine.waiting import not_resumable, status_is, until
from regen.engine import Engine, Flow, RunStatus
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
