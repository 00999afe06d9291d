"""Durable-step cost on PostgreSQL: regen vs DBOS Transact, and the raw commit floor.

regen runs a flow of N trivial steps, R runs one after the other, through the engine with
``REGEN_DATABASE_URL`` naming a fresh database on the server; DBOS Transact runs a workflow
of N steps with its system database in another fresh database on the same server; the
floor is one row inserted per commit with psycopg (``synchronous_commit`` as the server
has it, on by default): ``execute`` and ``commit``, as an application writes (the bar's
baseline), and the ``INSERT`` alone in autocommit mode, one round trip (printed beside).
Every step is checkpointed before the next starts on each side.
The figure is wall time per step; rounds are interleaved (one of each system per round)
so load on the machine hits them alike, and medians are reported. Ratios use the sync
variants (``engine.sync.run``, a DBOS sync workflow); async figures are printed beside.

    .venv/bin/python benchmarks/pg_steps.py [--url postgresql://postgres@127.0.0.1/test]
        [--steps 100] [--runs 3] [--repeat 5] [--json]

The server is named by ``--url`` (default: ``REGEN_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/test``); its user must be allowed to create
databases. The databases made are dropped at the end. :func:`measure` returns the figures
for other benchmarks to merge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _dbos import launch_dbos  # benchmarks/_dbos.py, beside this script

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def fresh_database(server: str, label: str) -> Iterator[str]:
    """A new database on the server of ``server`` (a URL), dropped afterwards: its URL."""
    import psycopg  # noqa: PLC0415 - the postgres extra

    name = f"regen_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{server.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Regen:
    """The engine on PostgreSQL, opened as ``regen`` opens it: from ``REGEN_DATABASE_URL``."""

    def __init__(self, url: str, home: Path, steps: int, runs: int) -> None:
        from regen.engine import Engine, Flow  # noqa: PLC0415

        self.steps, self.runs = steps, runs
        previous = os.environ.get("REGEN_DATABASE_URL")
        os.environ["REGEN_DATABASE_URL"] = url
        try:
            self.engine = Engine(home=home)
        finally:
            if previous is None:
                del os.environ["REGEN_DATABASE_URL"]
            else:
                os.environ["REGEN_DATABASE_URL"] = previous
        self.sync_flow, self.async_flow = Flow("bench_sync"), Flow("bench_async")
        for i in range(steps):

            def step(ctx: Any, i: int = i) -> int:
                return i

            async def astep(ctx: Any, i: int = i) -> int:
                return i

            self.sync_flow.step(name=f"s{i}")(step)
            self.async_flow.step(name=f"s{i}")(astep)
        self.loop = asyncio.new_event_loop()

    def sync(self) -> float:
        started = time.perf_counter()
        for _ in range(self.runs):
            run = self.engine.sync.run(self.sync_flow)
            assert run.status == "succeeded", run
        return (time.perf_counter() - started) / (self.steps * self.runs)

    def async_(self) -> float:
        async def go() -> None:
            for _ in range(self.runs):
                run = await self.engine.run(self.async_flow)
                assert run.status == "succeeded", run

        started = time.perf_counter()
        self.loop.run_until_complete(go())
        return (time.perf_counter() - started) / (self.steps * self.runs)

    def close(self) -> None:
        self.loop.close()
        self.engine.close()


class Dbos:
    """DBOS Transact with its system database on the same server (its defaults)."""

    def __init__(self, url: str, steps: int, runs: int) -> None:
        self.steps, self.runs = steps, runs
        self.dbos, self.workflow, self.aworkflow = launch_dbos(
            {"name": "regen-bench", "log_level": "WARNING", "system_database_url": url}
        )
        self.loop = asyncio.new_event_loop()

    def sync(self) -> float:
        started = time.perf_counter()
        for _ in range(self.runs):
            self.workflow(self.steps)
        return (time.perf_counter() - started) / (self.steps * self.runs)

    def async_(self) -> float:
        async def go() -> None:
            for _ in range(self.runs):
                await self.aworkflow(self.steps)

        started = time.perf_counter()
        self.loop.run_until_complete(go())
        return (time.perf_counter() - started) / (self.steps * self.runs)

    def close(self) -> None:
        self.loop.close()
        self.dbos.destroy(destroy_registry=True)


class Raw:
    """The floor: one row inserted per commit with psycopg, as many commits as regen's steps:
    ``execute`` then ``commit`` (``BEGIN``, ``INSERT``, ``COMMIT``), as an application
    writes; ``autocommit``: the ``INSERT`` alone, its own transaction (one round trip)."""

    def __init__(self, url: str, steps: int, runs: int, *, autocommit: bool = False) -> None:
        import psycopg  # noqa: PLC0415

        self.count = steps * runs
        self.autocommit = autocommit
        self.conn = psycopg.connect(url, autocommit=autocommit)
        self.conn.execute("CREATE TABLE IF NOT EXISTS t (id BIGSERIAL PRIMARY KEY, v TEXT)")
        self.conn.commit()

    def sync(self) -> float:
        execute, commit = self.conn.execute, self.conn.commit
        started = time.perf_counter()
        if self.autocommit:
            for i in range(self.count):
                execute("INSERT INTO t (v) VALUES (%s)", (str(i),))
        else:
            for i in range(self.count):
                execute("INSERT INTO t (v) VALUES (%s)", (str(i),))
                commit()
        return (time.perf_counter() - started) / self.count

    def close(self) -> None:
        self.conn.close()


def _rounds(systems: dict[str, Any], repeat: int) -> dict[str, list[float]]:
    """Warm every system up, then ``repeat`` interleaved rounds of each: seconds per step."""
    samples: dict[str, list[float]] = {}
    for system in systems.values():
        system.sync()
        if hasattr(system, "async_"):
            system.async_()
    for _ in range(repeat):
        for name, system in systems.items():
            gc.collect()
            samples.setdefault(f"{name}_sync", []).append(system.sync())
            if hasattr(system, "async_"):
                samples.setdefault(f"{name}_async", []).append(system.async_())
    return samples


def measure(
    url: str | None = None, *, steps: int = 100, runs: int = 3, repeat: int = 5
) -> dict[str, Any]:
    """Per-step µs (medians) of regen, DBOS and the raw commit on the PostgreSQL server of
    ``url``, and ``ratios``: ``pg_step_vs_dbos``, ``pg_step_vs_raw_commit``."""
    server = url or os.environ.get("REGEN_TEST_POSTGRES_URL") or DEFAULT_URL
    logging.getLogger("dbos").setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="regen-bench-")))
        systems: dict[str, Any] = {}
        try:
            systems["regen"] = Regen(
                stack.enter_context(fresh_database(server, "regen")), home, steps, runs
            )
            systems["dbos"] = Dbos(stack.enter_context(fresh_database(server, "dbos")), steps, runs)
            raw = stack.enter_context(fresh_database(server, "raw"))
            systems["raw"] = Raw(raw, steps, runs)
            systems["raw_autocommit"] = Raw(raw, steps, runs, autocommit=True)
            samples = _rounds(systems, repeat)
        finally:
            for system in systems.values():
                system.close()  # before their databases are dropped
    us = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    return {
        "us_per_step": us,
        "steps": steps,
        "runs": runs,
        "repeat": repeat,
        "ratios": {
            "pg_step_vs_dbos": us["regen_sync"] / us["dbos_sync"],
            "pg_step_vs_raw_commit": us["regen_sync"] / us["raw_sync"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the PostgreSQL server (a database URL on it)")
    parser.add_argument("--steps", type=int, default=100, help="steps per flow, every system")
    parser.add_argument("--runs", type=int, default=3, help="runs per round, one after another")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    figures = measure(args.url, steps=args.steps, runs=args.runs, repeat=args.repeat)
    us = figures["us_per_step"]
    print(
        f"durable-step cost on PostgreSQL, {args.steps} steps × {args.runs} runs, "
        f"median of {args.repeat} rounds (µs per step)"
    )
    print(f"{'system':<32}{'sync':>10}{'async':>10}")
    for label, name in [
        ("regen", "regen"),
        ("DBOS Transact", "dbos"),
        ("raw commit (one row, psycopg)", "raw"),
        ("  the INSERT alone (autocommit)", "raw_autocommit"),
    ]:
        asyn = us.get(f"{name}_async")
        print(f"{label:<32}{us[f'{name}_sync']:>10.1f}{'' if asyn is None else f'{asyn:>10.1f}'}")
    for name, value in figures["ratios"].items():
        print(f"{name}: {value:.3f}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
