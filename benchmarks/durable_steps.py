"""Per-step checkpoint overhead: regen vs DBOS Transact vs LangGraph, and the raw floor.

Each system runs a flow (workflow, graph) of N trivial steps (nodes) on a SQLite file and
checkpoints every step; the figure is wall time per step. Repetitions are interleaved
(one of each system per round) so load on the machine hits them alike; medians are
reported. The raw floor is one row inserted per commit on the same journal and sync
settings as regen's database (WAL, synchronous=NORMAL).

Ratios use sync steps (regen's ``run_sync``, DBOS sync workflow, LangGraph ``invoke``);
async figures are printed beside them.

    .venv/bin/python benchmarks/durable_steps.py [--steps 100] [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from regen.engine import Engine, Flow


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
        run = self.engine.run_sync(self.sync_flow)
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


class Dbos:
    def __init__(self, folder: Path, n: int) -> None:
        from dbos import DBOS  # noqa: PLC0415 - a peer, only for this benchmark

        self.n = n
        self.dbos = DBOS
        DBOS(
            config={
                "name": "regen-bench",
                "log_level": "WARNING",
                "system_database_url": f"sqlite:///{folder / 'dbos.sqlite'}",
            }
        )

        @DBOS.step()
        def step(i: int) -> int:
            return i

        @DBOS.step()
        async def astep(i: int) -> int:
            return i

        @DBOS.workflow()
        def workflow(count: int) -> int:
            for i in range(count):
                step(i)
            return count

        @DBOS.workflow()
        async def aworkflow(count: int) -> int:
            for i in range(count):
                await astep(i)
            return count

        self.workflow, self.aworkflow = workflow, aworkflow
        DBOS.launch()
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
        self.dbos.destroy()


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
    """The floor: one row inserted per commit, WAL, synchronous=NORMAL (regen's settings)."""

    def __init__(self, folder: Path, n: int) -> None:
        self.n = n
        self.conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per flow (regen, raw)")
    parser.add_argument(
        "--peer-steps",
        type=int,
        default=30,
        help="steps per workflow for DBOS and LangGraph (they are slower)",
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    logging.getLogger("dbos").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="regen-bench-") as tmp:
        root = Path(tmp)
        for name in ("regen", "dbos", "langgraph", "raw"):
            (root / name).mkdir()
        systems: dict[str, Any] = {
            "regen": Regen(root / "regen", args.steps),
            "dbos": Dbos(root / "dbos", args.peer_steps),
            "langgraph": LangGraph(root / "langgraph", args.peer_steps),
            "raw": Raw(root / "raw", args.steps),
        }
        samples: dict[str, list[float]] = {}
        try:
            for system in systems.values():  # warm up
                system.sync()
                if hasattr(system, "async_"):
                    system.async_()
            for _ in range(args.repeat):
                for name, system in systems.items():
                    gc.collect()
                    samples.setdefault(f"{name}_sync", []).append(system.sync())
                    if hasattr(system, "async_"):
                        samples.setdefault(f"{name}_async", []).append(system.async_())
        finally:
            for system in systems.values():
                system.close()

    us = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    ratios = {
        "step_vs_dbos": us["regen_sync"] / us["dbos_sync"],
        "step_vs_langgraph": us["regen_sync"] / us["langgraph_sync"],
        "step_vs_raw_commit": us["regen_sync"] / us["raw_sync"],
    }
    print(f"per-step checkpoint cost, median of {args.repeat} (µs per step)")
    print(f"{'system':<12}{'sync':>12}{'async':>12}")
    for name in ("regen", "dbos", "langgraph", "raw"):
        sync = us[f"{name}_sync"]
        asyn = us.get(f"{name}_async")
        print(f"{name:<12}{sync:>12.1f}{'' if asyn is None else f'{asyn:>12.1f}'}")
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    if args.json:
        print(
            json.dumps(
                {
                    "us_per_step": us,
                    "steps": args.steps,
                    "peer_steps": args.peer_steps,
                    "repeat": args.repeat,
                    "ratios": ratios,
                }
            )
        )


if __name__ == "__main__":
    main()
