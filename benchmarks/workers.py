"""Workers on PostgreSQL: how one big map step scales with the `regen worker` processes
that share it.

Scale: one run whose map step has ``--items`` items (1,000), each one chat completion
against the simulator (``regen sim`` in its own process, ``--latency-ms`` 500 ms, no
faults), executed by 1, 2 and 4 ``regen worker`` processes on PostgreSQL, a fresh
database per run. The step's concurrency (16) bounds what each worker process runs of it
at once. Throughput is measured from the store's records, from the first item claimed to
the last item finished (process start-up is not counted); ``scale_2`` and ``scale_4`` are
the throughputs with 2 and 4 workers over that with 1 (bars: ≥ 1.8 and ≥ 3.2).

Steps: the cost of one durable step on the same server, from ``pg_steps.measure()``
(benchmarks/pg_steps.py, which also runs on its own): ``pg_step_vs_dbos`` (regen's step
over DBOS Transact's) and ``pg_step_vs_raw_commit`` (over one row inserted per commit with
psycopg), ``--steps`` steps × ``--step-runs`` runs, median of ``--step-repeat`` rounds.

    PYTHONPATH=src .venv/bin/python benchmarks/workers.py [--items 1000] [--latency-ms 500]
        [--steps 100] [--step-runs 3] [--step-repeat 5] [--postgres URL] [--json]

``--postgres``: a server where databases may be created (default ``REGEN_BENCH_POSTGRES_URL``,
else ``postgresql://postgres@127.0.0.1:5432/postgres``). Each part of the benchmark is a
function returning a dict of figures; :func:`main` merges them into the one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_steps  # benchmarks/pg_steps.py, beside this
from _servers import RUN_CLI, start_sim, stop_server  # benchmarks/_servers.py, beside this

from regen.engine import Engine, Flow
from regen.providers import OpenAIProvider
from regen.retry import Policy

PER_WORKER = 16
WORKER_COUNTS = (1, 2, 4)
BAR_SCALE_2 = 1.8
BAR_SCALE_4 = 3.2
HERE = Path(__file__).resolve().parent


def _chat(params: Any) -> OpenAIProvider:
    """Each process's client of the simulator (``ctx.resources``), closed after use."""
    return OpenAIProvider(params["base_url"], "sk-bench", model="sim")


#: The flow every worker loads by ``workers:flow`` (this file, on their PYTHONPATH).
flow = Flow("bench_workers", params={"base_url": str, "items": int}, resources=_chat)


@flow.map(
    items=lambda ctx: (f"Summarise headline {i}" for i in range(ctx.params["items"])),
    concurrency=PER_WORKER,
    policy=Policy(attempts=3, timeout=30.0, wait=0.1),
)
async def summarise(ctx: Any, prompt: str) -> str:
    result = await ctx.resources.chat_once(prompt, max_tokens=16)
    return str(result.text)


# --- a fresh database per run ----------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new database on ``server`` (dropped afterwards): its URL."""
    import psycopg  # noqa: PLC0415 - the PostgreSQL extra

    name = f"regen_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{server.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_workers(url: str, count: int, home: str) -> list[subprocess.Popen[str]]:
    """``count`` ``regen worker`` processes on ``url``, each ready (its first line read)."""
    env = {
        **os.environ,
        "REGEN_DATABASE_URL": url,
        "REGEN_HOME": home,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-c", RUN_CLI, "worker", "--flow", "workers:flow", "--poll", "0.1"]
    workers = [
        subprocess.Popen(
            [*command, "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(count)
    ]
    for worker in workers:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        if '"started"' not in line:
            raise SystemExit(f"a worker did not start: {line!r}")
    return workers


def stop_workers(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()


def one_run(server: str, sim_url: str, items: int, workers: int) -> dict[str, Any]:
    """One run of the map step by ``workers`` processes: its throughput and who ran what."""
    with fresh_database(server) as url, Engine(url, home=HERE / ".bench-home") as engine:
        started = start_workers(url, workers, str(HERE / ".bench-home"))
        try:
            run_id = engine.sync.start(flow, {"base_url": f"{sim_url}/v1", "items": items}).run.id
            run = engine.sync.get_run(run_id)
            while not run.status.finished:
                time.sleep(0.2)
                run = engine.sync.get_run(run_id)
        finally:
            stop_workers(started)
        done, after = [], -1
        while page := engine.sync.items(run_id, "summarise", after=after, limit=1000):
            done.extend(page)
            after = page[-1].idx
    first = min(i.started_at for i in done if i.started_at is not None)
    last = max(i.finished_at for i in done if i.finished_at is not None)
    by_worker = Counter(i.worker for i in done)
    succeeded = sum(1 for i in done if i.status == "succeeded")
    return {
        "status": str(run.status),
        "succeeded": succeeded,
        "seconds": last - first,
        "throughput": succeeded / (last - first),
        "items_per_worker": sorted(by_worker.values(), reverse=True),
    }


# --- the parts --------------------------------------------------------------------------------


def scale(server: str, items: int, latency_ms: float) -> dict[str, Any]:
    """The scale part: throughput with 1, 2 and 4 workers, and the ratios to 1."""
    sim, sim_url = start_sim("--latency", f"{latency_ms:g}ms")
    try:
        runs = {n: one_run(server, sim_url, items, n) for n in WORKER_COUNTS}
    finally:
        stop_server(sim)
    base = runs[1]["throughput"]
    return {
        "items": items,
        "latency_ms": latency_ms,
        "per_worker_concurrency": PER_WORKER,
        "throughputs": {str(n): runs[n]["throughput"] for n in WORKER_COUNTS},
        "runs": {str(n): runs[n] for n in WORKER_COUNTS},
        "ratios": {
            "scale_2": runs[2]["throughput"] / base,
            "scale_4": runs[4]["throughput"] / base,
        },
    }


def report_scale(figures: dict[str, Any], out: Any) -> None:
    ideal = figures["per_worker_concurrency"] / (figures["latency_ms"] / 1000)
    print(
        f"{figures['items']} chat completions, latency {figures['latency_ms']:g} ms, "
        f"concurrency {figures['per_worker_concurrency']} per worker "
        f"(ideal {ideal:.0f} items/s per worker)",
        file=out,
    )
    print(
        f"{'workers':>7}  {'items/s':>8}  {'seconds':>7}  {'vs 1':>5}  items per worker", file=out
    )
    base = figures["throughputs"]["1"]
    for n in WORKER_COUNTS:
        run = figures["runs"][str(n)]
        print(
            f"{n:>7}  {run['throughput']:>8.1f}  {run['seconds']:>7.2f}  "
            f"{run['throughput'] / base:>5.2f}  {run['items_per_worker']}",
            file=out,
        )
    ratios = figures["ratios"]
    print(
        f"scale_2 {ratios['scale_2']:.2f} (bar ≥ {BAR_SCALE_2}), "
        f"scale_4 {ratios['scale_4']:.2f} (bar ≥ {BAR_SCALE_4})",
        file=out,
    )


def steps(server: str, count: int, runs: int, repeat: int) -> dict[str, Any]:
    """The steps part: a durable step's cost on the server beside DBOS and the raw commit
    (its ``ratios``: ``pg_step_vs_dbos``, ``pg_step_vs_raw_commit``; the rest of
    :func:`pg_steps.measure`'s figures under ``pg_steps``)."""
    figures = pg_steps.measure(server, steps=count, runs=runs, repeat=repeat)
    ratios = figures.pop("ratios")
    return {"pg_steps": figures, "ratios": ratios}


def report_steps(figures: dict[str, Any], out: Any) -> None:
    us = figures["pg_steps"]["us_per_step"]
    print(
        f"durable step on PostgreSQL (µs, sync): regen {us['regen_sync']:.0f}, "
        f"DBOS {us['dbos_sync']:.0f}, raw commit {us['raw_sync']:.0f}",
        file=out,
    )
    ratios = figures["ratios"]
    print(
        f"pg_step_vs_dbos {ratios['pg_step_vs_dbos']:.2f}, "
        f"pg_step_vs_raw_commit {ratios['pg_step_vs_raw_commit']:.2f}",
        file=out,
    )


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    """The parts' figures as one object; their ``ratios`` merged into one."""
    merged: dict[str, Any] = {"ratios": {}}
    for part in parts:
        for name, value in part.items():
            if name == "ratios":
                merged["ratios"].update(value)
            else:
                merged[name] = value
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000, help="items of the map step")
    parser.add_argument("--latency-ms", type=float, default=500.0, help="simulated latency")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "REGEN_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server where databases may be created",
    )
    parser.add_argument("--steps", type=int, default=100, help="steps per flow (step cost)")
    parser.add_argument("--step-runs", type=int, default=3, help="runs per round (step cost)")
    parser.add_argument("--step-repeat", type=int, default=5, help="rounds (step cost)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    out = sys.stderr if args.json else sys.stdout
    scaled = scale(args.postgres, args.items, args.latency_ms)
    report_scale(scaled, out)
    stepped = steps(args.postgres, args.steps, args.step_runs, args.step_repeat)
    report_steps(stepped, out)
    if args.json:
        print(json.dumps(merge(scaled, stepped)))


if __name__ == "__main__":
    main()
