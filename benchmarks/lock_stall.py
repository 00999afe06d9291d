"""A busy database delays only the writes that wait on it: the event loop goes on.

A run of one map step, ``--items`` chat completions 64 at a time against the simulator
(``regen sim`` in its own process, 50 ms latency), while another process takes SQLite's
write lock (``BEGIN IMMEDIATE``) on the run's database and holds it ``--hold`` seconds
(3 s), longer than SQLite's busy timeout. A ticker task on regen's event loop wakes every
10 ms and records how late it woke: the largest lag is how long the loop stalled. The run
must succeed with every item done once (the simulator counts requests per prompt).

Figures: ``max_loop_lag_ms`` (bar ≤ 100), ``lock_held_s`` (≥ 3), ``items``,
``succeeded`` (true), ``repeated_items`` (0), and the wall time. There is no peer: the
engines the other benchmarks compare with share no such design to set beside it.

    .venv/bin/python benchmarks/lock_stall.py [--items 512] [--hold 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _servers import start_sim, stop_server  # benchmarks/_servers.py, beside this script

from regen.engine import Engine, Flow
from regen.providers import OpenAIProvider, Transport
from regen.retry import Policy

BAR_MAX_LOOP_LAG_MS = 100.0
CONCURRENCY = 64
TICK = 0.01

_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
started = time.monotonic()
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print(f"{time.monotonic() - started:.3f}", flush=True)
"""


async def measure(base_url: str, items: int, hold: float, folder: Path) -> dict[str, Any]:
    transport = Transport(limit=256)
    provider = OpenAIProvider(base_url, "sk-bench", model="sim", transport=transport)
    flow = Flow("lock_stall")
    policy = Policy(attempts=3, timeout=30.0, wait=0.1, multiplier=1.0, jitter=0.0)

    def prompts(ctx: Any) -> Any:
        return (f"Summarise headline {i}" for i in range(items))

    @flow.map(items=prompts, concurrency=CONCURRENCY, policy=policy)
    async def summarise(ctx: Any, prompt: str) -> str:
        return (await provider.chat_once(prompt, max_tokens=16)).text

    lags: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            lags.append(loop.time() - due)

    async with Engine(f"sqlite:///{folder / 'regen.db'}", home=folder) as engine:
        started = await engine.start(flow)
        holder: asyncio.subprocess.Process | None = None
        tick = asyncio.create_task(ticker())
        began = time.perf_counter()
        execution = asyncio.create_task(engine.execute(started.run.id))
        await asyncio.sleep(0.3)  # the items are in flight, the commits flowing
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _HOLDER,
            str(folder / "regen.db"),
            str(hold),
            stdout=asyncio.subprocess.PIPE,
        )
        assert holder.stdout is not None
        await holder.stdout.readline()  # "locked"
        run = await execution
        wall = time.perf_counter() - began
        held = float((await holder.stdout.readline()).decode() or 0.0)
        await holder.wait()
        tick.cancel()
        counts = (await engine.detail(run.id)).items["summarise"]
    await transport.aclose()
    return {
        "status": str(run.status),
        "counts": counts,
        "wall_s": wall,
        "lock_held_s": held,
        "max_loop_lag_ms": max(lags) * 1000 if lags else 0.0,
    }


def repeated(base_url: str) -> int:
    """Prompts the simulator answered more than once (an item done twice)."""
    with urllib.request.urlopen(f"{base_url.removesuffix('/v1')}/_sim/stats") as answer:
        stats = json.loads(answer.read())
    prompts = stats.get("prompts", {})
    return sum(
        1 for row in prompts.values() if isinstance(row, dict) and row.get("requests", 0) > 1
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds the lock is held")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    sim, url = start_sim("--latency", "50ms")
    try:
        with tempfile.TemporaryDirectory() as folder:
            report = asyncio.run(measure(f"{url}/v1", args.items, args.hold, Path(folder)))
        again = repeated(url)
    finally:
        stop_server(sim)
    figures = {
        "max_loop_lag_ms": round(report["max_loop_lag_ms"], 1),
        "lock_held_s": round(report["lock_held_s"], 2),
        "items": args.items,
        "succeeded": report["status"] == "succeeded"
        and report["counts"]["succeeded"] == args.items,
        "repeated_items": again,
        "wall_s": round(report["wall_s"], 2),
    }
    print(f"lock held by another process: {figures['lock_held_s']} s")
    print(
        f"largest event-loop lag: {figures['max_loop_lag_ms']} ms (bar ≤ {BAR_MAX_LOOP_LAG_MS:g})"
    )
    print(f"run: {report['status']}, items {report['counts']}, repeated {again}")
    print(f"wall: {figures['wall_s']} s")
    if args.json:
        print(json.dumps({**figures, "ratios": {"max_loop_lag_ms": figures["max_loop_lag_ms"]}}))


if __name__ == "__main__":
    main()
