"""Per-step checkpoint overhead: regen vs DBOS Transact vs LangGraph, and the raw floor.

Each system runs a flow (workflow, graph) of N trivial steps (nodes) on a SQLite file and
checkpoints every step; the figure is wall time per step. Each system lives in a process
of its own for the whole run (DBOS starts background threads that poll its database, and
its heap and threads would otherwise slow whichever system shares the process), and the
parent interleaves the repetitions (one of each system per round, one system running at a
time) so load on the machine hits them alike; medians are reported. The raw floor is one
row inserted per commit on the same page size, journal and sync settings as regen's
database (2 KiB pages, WAL, synchronous=NORMAL).

A round times ``--runs`` runs of each system one after the other (a sample is its mean
per step), so that every sample carries the WAL checkpoints its commits cause: SQLite
folds the log into the database file (two fsyncs, ~3 ms) each time it reaches 1,000
pages, which is every 2–3 runs of regen's 100 steps and every 1,000 commits of the raw
floor. With one run per round the medians fell on either side of that cost by chance.

Ratios use sync steps (regen's ``engine.sync.run``, DBOS sync workflow, LangGraph ``invoke``);
async figures are printed beside them. DBOS runs on its own defaults (rollback journal,
``synchronous=FULL``) for the bar, and a second DBOS process on regen's settings (WAL,
``synchronous=NORMAL``) in the same rounds.

    .venv/bin/python benchmarks/durable_steps.py [--steps 100] [--runs 10] [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import multiprocessing
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypedDict

from _dbos import launch_dbos  # benchmarks/_dbos.py, beside this script

from regen.engine import Engine, Flow
from regen.store._sqlite_db import PAGE_SIZE


def regen_flows(n: int) -> tuple[Flow, Flow]:
    sync_flow, async_flow = Flow("bench_sync"), Flow("bench_async")
    for i in range(n):

        def step(ctx: Any, i: int = i) -> int:
            return i

        async def astep(ctx: Any, i: int = i) -> int:
            return i

        sync_flow.step(name=f"s{i}")(step)
        async_flow.step(name=f"s{i}")(astep)
    return sync_flow, async_flow


class Regen:
    def __init__(self, folder: Path, n: int) -> None:
        self.n = n
        self.engine = Engine(f"sqlite:///{folder / 'regen.db'}", home=folder)
        self.sync_flow, self.async_flow = regen_flows(n)
        self.loop = asyncio.new_event_loop()

    def sync(self) -> float:
        started = time.perf_counter()
        run = self.engine.sync.run(self.sync_flow)
        elapsed = time.perf_counter() - started
        assert run.status == "succeeded", run
        return elapsed / self.n

    def async_(self) -> float:
        started = time.perf_counter()
        run = self.loop.run_until_complete(self.engine.run(self.async_flow))
        elapsed = time.perf_counter() - started
        assert run.status == "succeeded", run
        return elapsed / self.n

    def close(self) -> None:
        self.loop.close()
        self.engine.close()


def wal_normal_engine(url: str) -> Any:
    """A SQLAlchemy engine for DBOS's system database on regen's journal and sync settings."""
    import sqlalchemy as sa  # noqa: PLC0415 - comes with DBOS

    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"  # as DBOS's own SQLite engine
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return engine


class Dbos:
    def __init__(self, folder: Path, n: int, *, wal_normal: bool = False) -> None:
        self.n = n
        url = f"sqlite:///{folder / 'dbos.sqlite'}"
        config: dict[str, Any] = {
            "name": "regen-bench",
            "log_level": "WARNING",
            "system_database_url": url,
        }
        if wal_normal:
            config["system_database_engine"] = wal_normal_engine(url)
        self.dbos, self.workflow, self.aworkflow = launch_dbos(config)
        self.loop = asyncio.new_event_loop()

    def sync(self) -> float:
        started = time.perf_counter()
        self.workflow(self.n)
        return (time.perf_counter() - started) / self.n

    def async_(self) -> float:
        started = time.perf_counter()
        self.loop.run_until_complete(self.aworkflow(self.n))
        return (time.perf_counter() - started) / self.n

    def close(self) -> None:
        self.loop.close()
        self.dbos.destroy(destroy_registry=True)


class State(TypedDict):
    x: int


class LangGraph:
    def __init__(self, folder: Path, n: int) -> None:
        from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: PLC0415 - a peer
        from langgraph.graph import END, START, StateGraph  # noqa: PLC0415 - a peer

        self.n = n
        self.folder = folder

        def build(make: Callable[[], Any]) -> Any:
            graph = StateGraph(State)
            previous = START
            for i in range(n):
                graph.add_node(f"n{i}", make())
                graph.add_edge(previous, f"n{i}")
                previous = f"n{i}"
            graph.add_edge(previous, END)
            return graph

        def node() -> Any:
            return lambda state: {"x": state["x"] + 1}

        def anode() -> Any:
            async def run(state: State) -> dict[str, int]:
                return {"x": state["x"] + 1}

            return run

        self.conn = sqlite3.connect(folder / "langgraph.sqlite", check_same_thread=False)
        self.app = build(node).compile(checkpointer=SqliteSaver(self.conn))
        self.agraph = build(anode)
        self.loop = asyncio.new_event_loop()

    def sync(self) -> float:
        config = {"configurable": {"thread_id": uuid.uuid4().hex}, "recursion_limit": self.n + 10}
        started = time.perf_counter()
        out = self.app.invoke({"x": 0}, config)
        elapsed = time.perf_counter() - started
        assert out["x"] == self.n
        return elapsed / self.n

    def async_(self) -> float:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: PLC0415

        async def go() -> float:
            path = str(self.folder / "langgraph-async.sqlite")
            async with AsyncSqliteSaver.from_conn_string(path) as saver:
                app = self.agraph.compile(checkpointer=saver)
                config = {
                    "configurable": {"thread_id": uuid.uuid4().hex},
                    "recursion_limit": self.n + 10,
                }
                started = time.perf_counter()
                await app.ainvoke({"x": 0}, config)
                return (time.perf_counter() - started) / self.n

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.close()
        self.conn.close()


class Raw:
    """The floor: one row inserted per commit, on regen's settings (page size, WAL,
    synchronous=NORMAL)."""

    def __init__(self, folder: Path, n: int) -> None:
        self.n = n
        self.conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
        self.conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")

    def sync(self) -> float:
        execute = self.conn.execute
        started = time.perf_counter()
        for i in range(self.n):
            execute("BEGIN IMMEDIATE")
            execute("INSERT INTO t (v) VALUES (?)", (str(i),))
            execute("COMMIT")
        return (time.perf_counter() - started) / self.n

    def close(self) -> None:
        self.conn.close()


#: Every system, by name, built from its folder and the step count (in its own process).
SYSTEMS: dict[str, Callable[[Path, int], Any]] = {
    "regen": Regen,
    "dbos": Dbos,
    "dbos_wal": lambda folder, n: Dbos(folder, n, wal_normal=True),
    "langgraph": LangGraph,
    "raw": Raw,
}


def _serve(name: str, folder: Path, n: int, runs: int, conn: Connection) -> None:
    """A system's process: build it, then run what the parent asks, one thing at a time
    (``runs`` runs of it: the mean per step)."""
    logging.getLogger("dbos").setLevel(logging.WARNING)
    system = SYSTEMS[name](folder, n)
    conn.send(hasattr(system, "async_"))
    try:
        while (command := conn.recv()) != "close":
            gc.collect()
            try:
                run = getattr(system, command)
                conn.send((True, statistics.fmean(run() for _ in range(runs))))
            except Exception as exc:
                conn.send((False, f"{type(exc).__name__}: {exc}"))
    finally:
        system.close()
        conn.close()


class Remote:
    """A system in a process of its own, driven through a pipe."""

    def __init__(self, name: str, folder: Path, n: int, runs: int) -> None:
        self.name = name
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(name, folder, n, runs, theirs))
        self._process.start()
        theirs.close()
        self.has_async: bool = self._conn.recv()

    def run(self, command: str) -> float:
        """Seconds per step of ``sync`` or ``async_`` runs (the mean of a round's runs)."""
        self._conn.send(command)
        ok, outcome = self._conn.recv()
        if not ok:
            raise RuntimeError(f"{self.name} failed: {outcome}")
        return float(outcome)

    def close(self) -> None:
        self._conn.send("close")
        self._process.join()


def measure(systems: dict[str, Remote], repeat: int) -> dict[str, list[float]]:
    """Warm every system up, then run ``repeat`` interleaved rounds of each."""
    for system in systems.values():
        system.run("sync")
        if system.has_async:
            system.run("async_")
    samples: dict[str, list[float]] = {}
    for _ in range(repeat):
        for name, system in systems.items():
            samples.setdefault(f"{name}_sync", []).append(system.run("sync"))
            if system.has_async:
                samples.setdefault(f"{name}_async", []).append(system.run("async_"))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per flow, for every system")
    parser.add_argument("--runs", type=int, default=10, help="runs per round, for every system")
    parser.add_argument("--repeat", type=int, default=7, help="rounds")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="regen-bench-") as tmp:
        systems: dict[str, Remote] = {}
        try:
            for name in SYSTEMS:
                (Path(tmp) / name).mkdir()
                systems[name] = Remote(name, Path(tmp) / name, args.steps, args.runs)
            samples = measure(systems, args.repeat)
        finally:
            for system in systems.values():
                system.close()

    us = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    ratios = {
        "step_vs_dbos": us["regen_sync"] / us["dbos_sync"],
        "step_vs_langgraph": us["regen_sync"] / us["langgraph_sync"],
        "step_vs_raw_commit": us["regen_sync"] / us["raw_sync"],
    }
    wal_ratio = us["regen_sync"] / us["dbos_wal_sync"]
    print(
        f"per-step checkpoint cost, {args.steps} steps, {args.runs} runs a round, "
        f"median of {args.repeat} rounds (µs per step)"
    )
    print(f"{'system':<28}{'sync':>12}{'async':>12}")
    rows = [
        ("regen", "regen"),
        ("dbos (its defaults)", "dbos"),
        ("dbos (WAL, NORMAL)", "dbos_wal"),
        ("langgraph + SqliteSaver", "langgraph"),
        ("raw commit (WAL, NORMAL)", "raw"),
    ]
    for label, name in rows:
        sync = us[f"{name}_sync"]
        asyn = us.get(f"{name}_async")
        print(f"{label:<28}{sync:>12.1f}{'' if asyn is None else f'{asyn:>12.1f}'}")
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    print(f"step_vs_dbos on regen's journal and sync settings: {wal_ratio:.3f}")
    if args.json:
        print(
            json.dumps(
                {
                    "us_per_step": us,
                    "step_vs_dbos_wal_normal": wal_ratio,
                    "steps": args.steps,
                    "runs": args.runs,
                    "repeat": args.repeat,
                    "ratios": ratios,
                }
            )
        )


if __name__ == "__main__":
    main()
