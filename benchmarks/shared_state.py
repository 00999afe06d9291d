"""What sharing provider state costs a call: one process's memory against the store.

A provider call through a breaker reads its value before the call and after it
(``state.update`` twice), and adds to its counters (``state.count``). This measures each
operation on ``MemoryState`` (the providers' default, one process), on the engine's
store-backed state on SQLite (every process of a machine) and, with ``--postgres URL``,
on PostgreSQL (every worker on every machine; give it a scratch database: the run leaves
``bench`` counters and keys behind), side by side in one run:

- ``noop_update``: an update that changes nothing (a closed breaker staying closed: the
  common case);
- ``write_update``: an update that writes a new value (a breaker opening, a rate limit's
  token taken);
- ``count``: adding one call's counters (kept in memory, written in batches);
- ``noop_update_busy``: the no-op update while another process writes to the same
  database without pause (SQLite: the writer is busy; the no-op must not wait for it).

Figures in microseconds per operation (median of ``--reps`` repetitions of ``--ops``
operations); with ``--json`` the last line holds them all.

    .venv/bin/python benchmarks/shared_state.py [--ops 2000] [--reps 5] [--postgres URL] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from regen.engine import StoreState
from regen.providers import MemoryState, SharedState
from regen.store import PostgresStore, SQLiteStore, Store

_WRITER = """
import asyncio, sys, time
from regen.store import Count, open_store

async def hammer():
    store = open_store(sys.argv[1])
    print("writing", flush=True)
    rows = [Count(float(i * 60), "bench", "", "attempts", 1) for i in range(200)]
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        await store.add_counts(rows)
    await store.close()

asyncio.run(hammer())
"""


async def _per_op(ops: int, reps: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Median microseconds per ``op`` over ``reps`` runs of ``ops`` calls."""
    for i in range(min(ops, 200)):  # warm-up
        await op(i)
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        for i in range(ops):
            await op(i)
        samples.append((time.perf_counter() - started) / ops * 1e6)
    return round(statistics.median(samples), 1)


async def _measure(state: SharedState, ops: int, reps: int) -> dict[str, float]:
    async def noop(_: int) -> Any:
        return await state.update("breaker:bench", lambda value: (value, None))

    async def write(i: int) -> Any:
        return await state.update("limit:bench", lambda value: ({"tokens": i}, None))

    async def count(_: int) -> Any:
        key = ("bench", "", "attempts")
        return await state.count({key: 1, ("bench", "timeout", "retries"): 1}, time.time())

    figures = {
        "noop_update": await _per_op(ops, reps, noop),
        "write_update": await _per_op(ops, reps, write),
        "count": await _per_op(ops, reps, count),
    }
    if isinstance(state, StoreState):
        await state.flush()
    return figures


async def _busy(url: str, state: SharedState, ops: int, reps: int, seconds: float) -> float:
    """The no-op update's cost while another process writes to the database."""
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITER, url, str(seconds), stdout=subprocess.PIPE
    )
    try:
        assert writer.stdout is not None
        await writer.stdout.readline()
        await asyncio.sleep(0.2)

        async def noop(_: int) -> Any:
            return await state.update("breaker:bench", lambda value: (value, None))

        return await _per_op(ops, reps, noop)
    finally:
        await writer.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000, help="operations per repetition")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (the median is kept)")
    parser.add_argument("--postgres", metavar="URL", help="also measure on this database")
    parser.add_argument("--json", action="store_true", help="a JSON line of the figures last")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    results["memory"] = await _measure(MemoryState(), args.ops, args.reps)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'regen.db'}"
        store: Store = SQLiteStore(Path(folder) / "regen.db")
        try:
            state = StoreState(store)
            results["sqlite"] = await _measure(state, args.ops, args.reps)
            busy_ops = max(args.ops // 4, 10)
            results["sqlite"]["noop_update_busy"] = await _busy(
                url, state, busy_ops, args.reps, 2.0 + busy_ops * args.reps / 2000
            )
        finally:
            await store.close()
    if args.postgres:
        pg = PostgresStore(args.postgres)
        try:
            state = StoreState(pg)
            results["postgres"] = await _measure(state, max(args.ops // 10, 10), args.reps)
        finally:
            await pg.close()

    names = ("noop_update", "write_update", "count", "noop_update_busy")
    print(f"{'µs per operation':<20}" + "".join(f"{n:>18}" for n in names))
    for backend, figures in results.items():
        cells = "".join(f"{figures[n]:>18.1f}" if n in figures else f"{'-':>18}" for n in names)
        print(f"{backend:<20}{cells}")
    if args.json:
        print(json.dumps({"ops": args.ops, "reps": args.reps, "us_per_op": results}))


if __name__ == "__main__":
    asyncio.run(main())
