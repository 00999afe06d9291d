"""A run's outbox: writes kept in order, committed many at a time, never lost."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.waiting import blocking
from regen.engine import Engine, Flow, RunStatus
from regen.engine._outbox import Outbox
from regen.store import AddEvent, Commit, Lease, NewRun, SQLiteStore, Write


class CountingStore(SQLiteStore):
    """A real SQLite store that counts the transactions its runs' writes take."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.commits = 0

    async def commit(self, lease: Lease, writes: Sequence[Write]) -> Commit:
        self.commits += 1
        return await super().commit(lease, writes)


@pytest.fixture
async def held(tmp_path: Path) -> AsyncIterator[tuple[CountingStore, Lease]]:
    store = CountingStore(tmp_path / "regen.db")
    run, _ = await store.create_run(NewRun("r1", "f", None, None, "{}", (("s", "step"),)), 1.0)
    claimed = await store.claim("me", 60.0, 2.0, run_id=run.id)
    assert claimed is not None
    try:
        yield store, claimed.lease
    finally:
        await store.close()


def _event(n: int) -> AddEvent:
    return AddEvent("log", f'{{"message":"{n}"}}', 3.0)


async def _messages(store: SQLiteStore) -> list[str]:
    return [e.data["message"] for e in await store.read_events("r1") if e.type == "log"]


async def test_commits_made_while_one_is_in_flight_share_the_next_transaction(
    held: tuple[CountingStore, Lease], tmp_path: Path
) -> None:
    store, lease = held
    outbox = Outbox(store, lease, asyncio.get_running_loop(), lambda _: None)
    # Another connection holds the write lock: the first commit waits on the store's
    # writer thread, and the commits made meanwhile queue up behind it.
    other = sqlite3.connect(tmp_path / "regen.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.05, other.execute, "COMMIT")
    try:
        results = await asyncio.gather(*(outbox.commit([_event(n)]) for n in range(50)))
    finally:
        other.close()
    assert all(r.ok for r in results)
    assert store.commits <= 3  # one for the first, one (or two) for all that waited behind it
    assert await _messages(store) == [str(n) for n in range(50)]


async def test_queued_writes_go_first_with_the_next_commit(
    held: tuple[CountingStore, Lease],
) -> None:
    store, lease = held
    outbox = Outbox(store, lease, asyncio.get_running_loop(), lambda _: None)
    outbox.add([_event(1)])
    outbox.add([_event(2)])
    await outbox.commit([_event(3)])
    assert store.commits == 1
    assert await _messages(store) == ["1", "2", "3"]


async def test_writes_from_another_thread_are_committed_without_anyone_waiting(
    held: tuple[CountingStore, Lease],
) -> None:
    store, lease = held
    outbox = Outbox(store, lease, asyncio.get_running_loop(), lambda _: None)
    thread = threading.Thread(target=outbox.add, args=([_event(7)],))
    thread.start()
    thread.join()
    for _ in range(500):
        if await _messages(store) == ["7"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the queued write was never committed")


async def test_a_lost_lease_is_reported_and_nothing_is_written(
    held: tuple[CountingStore, Lease],
) -> None:
    store, lease = held
    heard: list[Commit] = []
    outbox = Outbox(store, lease, asyncio.get_running_loop(), heard.append)
    await store.release(lease, 4.0)
    result = await outbox.commit([_event(1)])
    assert not result.ok
    assert heard == [result]
    assert await _messages(store) == []


def test_an_inline_sync_steps_events_show_while_it_still_runs(tmp_path: Path) -> None:
    engine = Engine(f"sqlite:///{tmp_path / 'regen.db'}", home=tmp_path)
    reader = SQLiteStore(tmp_path / "regen.db")
    flow = Flow("long_sync")
    seen: list[str] = []

    @flow.step()
    def work(ctx: Any) -> int:
        ctx.log("half way")
        deadline = time.monotonic() + 5
        while "half way" not in seen:  # the event loop is blocked here
            events = blocking(reader.read_events(ctx.run_id))
            seen.extend(e.data.get("message", "") for e in events if e.type == "log")
            assert time.monotonic() < deadline, "the step's event never showed while it ran"
            time.sleep(0.01)
        return 1

    try:
        run = engine.sync.run(flow)
        assert run.status is RunStatus.SUCCEEDED
    finally:
        reader.close_now()
        engine.close()
