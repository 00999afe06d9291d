"""A durable batch against the ideal: N chat completions through a checkpointed map step.

The simulator runs as ``regen sim`` in its own process on loopback, answering every request
after ``--latency`` (250 ms) and failing 10 % of them fast (``server_error=0.05,reset=0.05``,
seed 7). regen runs in another child process, so its peak RSS is measured alone: one flow,
one map step over ``--items`` items (streamed from a generator, never held in memory), each
item one OpenAI-compatible chat completion through regen's provider adapter, at most
``--concurrency`` in flight, retried after a fixed 100 ms wait that holds no concurrency
slot, every item checkpointed before it counts.

The ideal is the time the attempts need if the ``--concurrency`` slots were never idle:
total attempts (the simulator's count of chat requests) × latency ÷ concurrency. The figure
is the wall time of the run divided by it (``wall_vs_ideal``; bar ≤ 1.15) and the regen
process's peak RSS (``peak_rss_mb``; bar < 300, at any ``--items``).

    .venv/bin/python benchmarks/batch.py [--items 10000] [--latency 250ms] [--concurrency 64]
                                         [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _servers import start_sim, stop_server  # benchmarks/_servers.py, beside this script

BAR_WALL_VS_IDEAL = 1.15
BAR_PEAK_RSS_MB = 300.0
FAULTS = "server_error=0.05,reset=0.05"
SEED = 7
RETRY_WAIT = 0.1


# --- the regen process ----------------------------------------------------------------------


def child(order: dict[str, Any]) -> None:
    """Run the batch in this process; print one JSON line with what it measured."""
    from regen.engine import Engine, Flow  # noqa: PLC0415 - only the child imports regen
    from regen.providers import OpenAIProvider, Transport  # noqa: PLC0415
    from regen.retry import Policy  # noqa: PLC0415

    items, concurrency = int(order["items"]), int(order["concurrency"])
    transport = Transport(limit=max(256, concurrency))
    provider = OpenAIProvider(order["base_url"], "sk-bench", model="sim", transport=transport)
    flow = Flow("batch")
    policy = Policy(
        attempts=10, timeout=30.0, wait=RETRY_WAIT, multiplier=1.0, max_wait=RETRY_WAIT, jitter=0.0
    )

    def headlines(ctx: Any) -> Any:
        return (f"Summarise headline {i}" for i in range(items))

    @flow.map(items=headlines, concurrency=concurrency, policy=policy)
    async def summarise(ctx: Any, prompt: str) -> str:
        result = await provider.chat_once(prompt, max_tokens=32)
        return result.text

    async def main() -> dict[str, Any]:
        folder = Path(order["home"])
        async with Engine(f"sqlite:///{folder / 'regen.db'}", home=folder) as engine:
            started = time.perf_counter()
            run = await engine.run(flow)
            wall = time.perf_counter() - started
            counts = (await engine.detail(run.id)).items["summarise"]
        await transport.aclose()
        return {"status": str(run.status), "wall_s": wall, "counts": counts}

    report = asyncio.run(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report["peak_rss_mb"] = usage.ru_maxrss / 1024
    report["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(report), flush=True)


# --- the simulator and the report ---------------------------------------------------------------


def sim_attempts(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_sim/stats", timeout=60) as response:
        stats = json.load(response)
    return int(stats["routes"]["chat"]["requests"])


def run_batch(url: str, items: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="regen-batch-") as home:
        order = {"base_url": f"{url}/v1", "items": items, "concurrency": concurrency, "home": home}
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(order)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"the regen process failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--latency", default="250ms", help="simulated latency, e.g. 250ms")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="1,000 items: a smoke run")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(json.loads(args.child))
        return
    from regen.sim import parse_duration  # noqa: PLC0415 - the parent stays light

    items = 1_000 if args.quick else args.items
    latency = parse_duration(args.latency)
    sim, url = start_sim("--latency", args.latency, "--faults", FAULTS, "--seed", str(SEED))
    try:
        result = run_batch(url, items, args.concurrency)
        attempts = sim_attempts(url)
    finally:
        stop_server(sim)
    ideal = attempts * latency / args.concurrency
    wall = result["wall_s"]
    counts = result["counts"]
    figures = {
        "items": items,
        "latency_ms": latency * 1000,
        "concurrency": args.concurrency,
        "attempts": attempts,
        "succeeded": counts.get("succeeded", 0),
        "given_up": counts.get("given_up", 0),
        "status": result["status"],
        "wall_s": wall,
        "ideal_s": ideal,
        "wall_vs_ideal": wall / ideal if ideal else None,
        "peak_rss_mb": result["peak_rss_mb"],
        "items_per_s": items / wall if wall else None,
        "cpu_ms_per_item": result["cpu_s"] * 1000 / items,
    }
    out = sys.stderr if args.json else sys.stdout
    print(
        f"{items} items, {attempts} attempts ({attempts - items} retries), latency "
        f"{latency * 1000:g} ms, concurrency {args.concurrency}: run {result['status']}, "
        f"{figures['succeeded']} succeeded, {figures['given_up']} gave up",
        file=out,
    )
    print(
        f"wall {wall:.2f} s, ideal {ideal:.2f} s: wall_vs_ideal "
        f"{figures['wall_vs_ideal']:.3f} (bar ≤ {BAR_WALL_VS_IDEAL}); "
        f"{figures['items_per_s']:.0f} items/s; peak RSS {result['peak_rss_mb']:.0f} MB "
        f"(bar < {BAR_PEAK_RSS_MB:g}); regen's CPU {figures['cpu_ms_per_item']:.2f} ms "
        "per item",
        file=out,
    )
    if args.json:
        print(json.dumps({**figures, "ratios": {"wall_vs_ideal": figures["wall_vs_ideal"]}}))


if __name__ == "__main__":
    main()
