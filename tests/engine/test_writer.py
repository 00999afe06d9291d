"""The group-commit writer: awaited commits share a transaction per loop turn, queued writes
go in order with the next commit, writes from other threads are committed without anyone
awaiting them; and what that means for runs (events of an inline sync step show at once)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from regen.engine import Engine, Flow, RunStatus
from regen.engine._writer import Writer
from regen.store import AddEvent, Batch, Commit, Lease, NewRun, SQLiteStore, Store


class Counting:
    """A store wrapper counting transactions (commit calls) and the writes in each."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.commits: list[int] = []

    def commit(self, batches: list[Batch]) -> list[Commit]:
        self.commits.append(sum(len(b.writes) for b in batches))
        return self.store.commit(batches)


def _lease(store: SQLiteStore) -> Lease:
    store.create_run(NewRun("r1", "f", None, None, "{}", (("a", "step"),)), 1.0)
    claimed = store.claim("me", 1e6, 1.0)
    assert claimed is not None
    return claimed.lease


def _log(text: str) -> AddEvent:
    return AddEvent("log", f'{{"message":"{text}"}}', 2.0)


async def test_commits_awaited_in_one_turn_of_the_loop_share_a_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "regen.db")
    counting = Counting(store)
    writer = Writer(counting, lambda lease, commit: None)  # type: ignore[arg-type]
    try:
        lease = _lease(store)
        results = await asyncio.gather(*(writer.commit(lease, [_log(str(i))]) for i in range(20)))
        assert all(r.ok for r in results)
        assert counting.commits == [20]
        assert [e.data["message"] for e in store.read_events("r1")[-20:]] == [
            str(i) for i in range(20)
        ]
    finally:
        writer.close()
        store.close()


async def test_queued_writes_go_first_with_the_next_commit(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "regen.db")
    counting = Counting(store)
    writer = Writer(counting, lambda lease, commit: None)  # type: ignore[arg-type]
    try:
        lease = _lease(store)
        writer.add(lease, [_log("queued")])
        assert writer.commit_now(lease, [_log("now")]).ok
        assert counting.commits == [2]
        assert [e.data["message"] for e in store.read_events("r1")[-2:]] == ["queued", "now"]
        await asyncio.sleep(0.02)  # the lagged flush finds nothing left to do
        assert counting.commits == [2]
    finally:
        writer.close()
        store.close()


def test_writes_from_another_thread_are_committed_without_waiting_for_anyone(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "regen.db")
    writer = Writer(store, lambda lease, commit: None)
    try:
        lease = _lease(store)
        thread = threading.Thread(target=writer.add, args=(lease, [_log("from a thread")]))
        thread.start()
        thread.join()
        deadline = time.monotonic() + 5
        while not any(e.type == "log" for e in store.read_events("r1")):
            assert time.monotonic() < deadline, "never committed"
            time.sleep(0.01)
    finally:
        writer.close()
        store.close()


def test_an_inline_sync_steps_events_show_while_it_still_runs(tmp_path: Path) -> None:
    engine = Engine(f"sqlite:///{tmp_path / 'regen.db'}", home=tmp_path)
    reader = SQLiteStore(tmp_path / "regen.db")
    flow = Flow("long_sync")
    seen: list[str] = []

    @flow.step()
    def work(ctx: Any) -> int:
        ctx.log("half way")
        deadline = time.monotonic() + 5
        while "half way" not in seen:  # the event loop is blocked here: another thread commits
            events = reader.read_events(ctx.run_id)
            seen.extend(e.data.get("message", "") for e in events if e.type == "log")
            assert time.monotonic() < deadline, "the step's event never showed while it ran"
            time.sleep(0.01)
        return 1

    try:
        run = engine.run_sync(flow)
        assert run.status is RunStatus.SUCCEEDED
    finally:
        reader.close()
        engine.close()
