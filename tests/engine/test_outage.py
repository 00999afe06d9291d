"""A database outage longer than a call waits for it: the run is left for a take-over from
its checkpoints, never failed for the weather (PostgreSQL, through a relay that cuts every
connection for a while)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from tests.store.conftest import postgres_database
from tests.store.cutting_proxy import CuttingProxy

from regen.engine import Engine, Flow, RunStatus, Settings, WorkerEvent
from regen.store import DatabaseUnreachable

pytest.importorskip("psycopg")

#: Long enough that the lease outlives the outage: a failure recorded once the database is
#: back would not be fenced off, so the test sees it.
LEASE_S = 6.0
#: How long a store call waits for the database before it gives up.
RECONNECT_S = 2.0


def _through(url: str, port: int) -> str:
    head, _, tail = url.partition("@")
    _, _, rest = tail.partition("/")
    return f"{head}@127.0.0.1:{port}/{rest}"


@pytest.mark.parametrize("executed_by", ["execute", "worker"])
async def test_a_run_caught_by_a_long_outage_is_taken_over_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executed_by: str
) -> None:
    monkeypatch.setenv("REGEN_POSTGRES_RECONNECT_S", str(RECONNECT_S))
    calls: list[str] = []
    started, gate = asyncio.Event(), asyncio.Event()
    flow = Flow("outage")

    @flow.step()
    async def first(ctx):
        calls.append("first")
        started.set()
        await gate.wait()
        return 1

    @flow.step()
    async def second(ctx):
        calls.append("second")
        return ctx.results["first"] + 1

    settings = Settings(lease_ttl=LEASE_S)
    with postgres_database() as url, CuttingProxy("127.0.0.1", 5432) as proxy:
        cut_off = Engine(_through(url, proxy.port), home=tmp_path, settings=settings)
        try:
            cut_off.register(flow)
            run_id = (await cut_off.start(flow)).run.id
            events: list[WorkerEvent] = []
            execution = asyncio.create_task(
                cut_off.execute(run_id)
                if executed_by == "execute"
                else cut_off.worker(max_runs=1, poll=0.05, on_event=events.append)
            )
            await started.wait()
            proxy.go_down()
            gate.set()  # the step's checkpoint cannot be written
            # Back while the engine, having given up on the checkpoint, could still write
            # down what happened (the outage was no fault of the run's).
            await asyncio.sleep(RECONNECT_S * 1.15)
            proxy.come_back()
            with contextlib.suppress(DatabaseUnreachable):  # execute() says why it stopped
                await execution
        finally:
            cut_off.close()
        with Engine(url, home=tmp_path, settings=settings) as other:
            left = await other.get_run(run_id)
            assert left.status is RunStatus.RUNNING  # nothing recorded: not failed, not ended
            assert left.error is None
            if executed_by == "worker":
                assert [e.action for e in events] == ["claimed", "lost"]
                assert "cannot reach PostgreSQL" in (events[-1].reason or "")
            other.register(flow)
            await asyncio.sleep((left.lease_expires_at or 0) - time.time() + 0.05)  # it lapses
            run = await other.execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert run.crashes == 1  # taken over from its checkpoints
    assert calls == ["first", "first", "second"]
