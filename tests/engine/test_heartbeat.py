"""Leases kept alive: a step that runs longer than the lease keeps its run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from engine.waiting import blocking
from regen.engine import Engine, Flow, RunStatus, Settings
from regen.retry import FakeClock
from regen.store import Claimed, SQLiteStore

TTL = 0.3  # seconds of lease; the heartbeat renews it every TTL / 3 of real time


def _renewed_since(other: SQLiteStore, run_id: str, clock: FakeClock) -> None:
    """Wait until a heartbeat has renewed the lease after the clock's last move."""
    deadline = time.monotonic() + 10
    while (blocking(other.get_run(run_id)).lease_expires_at or 0) <= clock.now + TTL / 2:
        assert time.monotonic() < deadline, "the lease was never renewed"
        time.sleep(0.01)


@pytest.mark.parametrize("inline", [True, False], ids=["inline-on-the-loop", "in-a-thread"])
def test_a_step_longer_than_the_lease_keeps_it(
    tmp_path: Path, clock: FakeClock, inline: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'regen.db'}"
    claims: list[Claimed | None] = []
    flow = Flow("long")

    @flow.step()
    def long_step(ctx):
        # The step works for three leases' worth of time (the fake clock moves on), and
        # another process tries to take the run over all along.
        other = SQLiteStore(tmp_path / "regen.db")
        try:
            for _ in range(5):
                clock.advance(0.6 * TTL)
                _renewed_since(other, ctx.run_id, clock)
                claims.append(blocking(other.claim("other", TTL, clock.now, run_id=ctx.run_id)))
        finally:
            other.close_now()
        return "done"

    with Engine(url, home=tmp_path, settings=Settings(lease_ttl=TTL)) as engine:
        # Inline (engine.sync.run): the sync step blocks the event loop while it works.
        run = engine.sync.run(flow) if inline else asyncio.run(engine.run(flow))
        events = engine.sync.read_events(run.id)
    assert claims == [None] * 5  # the lease held throughout: nobody else could claim it
    assert run.status is RunStatus.SUCCEEDED
    assert run.executions == 1
    assert [e.data["resumed"] for e in events if e.type == "run.started"] == [False]
