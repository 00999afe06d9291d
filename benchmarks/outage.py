"""A provider outage in the middle of a batch: circuit breaker + fallback against plain retries,
then a rate limit shared by four worker processes.

**Phase 1, the outage.** Two simulators run as ``regen sim`` in processes of their own on
loopback, each answering after ``--latency`` (100 ms): the *primary*, which goes down at its
``--outage-after``-th request (300) for ``--outage-for`` (60 s), answering every request 503
meanwhile, and the *backup*, which stays healthy. A batch of ``--items`` (2,000) images runs
as one map step of a flow (engine on a fresh SQLite file per run, ``--concurrency`` 32 items
in flight), each item one call of the registry's image pipeline
(``ImagePipeline(registry.get("primary"))``, images as ``b64_json``, so that one image is one
request) under the same item policy in both runs: 3 attempts, waits of 1 s then 2 s.

- Run A, *plain retries* (what users have without a breaker): the registry declares the
  primary alone, its breaker off (``BreakerSettings(enabled=False)``) and no fallback. Every
  item that meets the outage spends its three attempts on the dead provider and gives up.
- Run B, *breaker + fallback*: the primary with the default breaker (5 outage failures in a
  row within 30 s open it for 30 s) and ``fallback = ["backup"]``. The calls in flight when
  the outage starts meet it and go on to the backup at once, within the same attempt; once
  the breaker is open the primary is skipped without a request.

Figures: ``calls_to_dead_provider_naive`` and ``calls_to_dead_provider`` (requests the
primary answered with its outage, from its ``/_sim/stats``, in runs A and B), ``given_up``
of each run, B's ``wall_s`` against ``ideal_s`` = items × latency ÷ concurrency. Bars:
``dead_calls_vs_naive`` (B ÷ A) ≤ 0.05, ``given_up`` = 0, ``wall_vs_ideal`` ≤ 1.5.

**Phase 2, a shared rate limit.** One simulator enforces 20 requests a second (burst 20,
429 with ``Retry-After`` past it); ``--workers`` (4) ``regen worker`` processes execute
runs queued on one SQLite file (and on PostgreSQL too with ``--postgres URL`` or
``REGEN_DATABASE_URL``), each run a map step of image calls through a registry whose
provider has ``[limit] rps = 18``, kept in the engine's store so that the four workers share
one token bucket. Figure: ``rate_limit_429_share``, the share of the simulator's requests it
answered 429 (bar ≤ 0.01).

    .venv/bin/python benchmarks/outage.py [--items 2000] [--concurrency 32] [--latency 100ms]
        [--outage-after 300] [--outage-for 60s] [--limited-items 480] [--workers 4]
        [--postgres URL] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _servers import RUN_CLI, start_sim, stop_server  # benchmarks/_servers.py, beside this

BAR_DEAD_CALLS_VS_NAIVE = 0.05
BAR_WALL_VS_IDEAL = 1.5
BAR_429_SHARE = 0.01
KEY = "sk-bench-outage"
#: Phase 2: the simulator's limit, regen's shared limit, runs each worker executes at once.
SIM_RPS, SIM_BURST, REGEN_RPS = 20.0, 20, 18.0
RUNS_PER_WORKER = 2
#: Distinct prompts: the simulator draws each distinct prompt's PNG once (PIL, ~1.5 ms of
#: its CPU) and keeps it; a real provider's rendering does not run on this machine, so the
#: items cycle through this many prompts to keep the simulator's drawing out of regen's time.
PROMPTS = 100
#: The item policy of both runs: 3 attempts, waits of 1 s then 2 s.
ATTEMPTS, FIRST_WAIT, LAST_WAIT = 3, 1.0, 2.0


def sim_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_sim/stats", timeout=60) as response:
        stats: dict[str, Any] = json.load(response)
    return stats


# --- phase 1: an outage -----------------------------------------------------------------------


async def run_batch(
    *, primary: str, backup: str | None, items: int, concurrency: int, home: Path
) -> dict[str, Any]:
    """One run of the batch: ``backup`` None is run A (plain retries), else run B."""
    from regen.engine import Engine, Flow  # noqa: PLC0415 - the parent's arguments first
    from regen.providers import (  # noqa: PLC0415
        BreakerSettings,
        ImagePipeline,
        ProviderConfig,
        Registry,
        Secret,
        Transport,
    )
    from regen.retry import Policy  # noqa: PLC0415

    policy = Policy(
        attempts=ATTEMPTS,
        timeout=30.0,
        wait=FIRST_WAIT,
        multiplier=LAST_WAIT / FIRST_WAIT,
        max_wait=LAST_WAIT,
        jitter=0.0,
    )
    providers = [
        ProviderConfig(
            name="primary",
            kind="openai",
            base_url=f"{primary}/v1",
            api_key=Secret(KEY),
            image_model="sim-image",
            policy=policy,
            breaker=BreakerSettings() if backup else BreakerSettings(enabled=False),
            fallback=("backup",) if backup else (),
        )
    ]
    if backup:
        providers.append(
            ProviderConfig(
                name="backup",
                kind="openai",
                base_url=f"{backup}/v1",
                api_key=Secret(KEY),
                image_model="sim-image",
                policy=policy,
            )
        )
    transport = Transport(limit=max(256, concurrency * 2))
    served: dict[str, int] = {}
    async with Registry(providers, default="primary", transport=transport) as registry:
        pipeline = ImagePipeline(registry.get("primary"), policy=policy)
        flow = Flow("outage")

        def prompts(ctx: Any) -> Any:
            return (f"news photo {i % PROMPTS}" for i in range(items))

        # One engine-level attempt per item: the pipeline retries the image itself.
        @flow.map(items=prompts, concurrency=concurrency, policy=Policy(attempts=1, timeout=None))
        async def illustrate(ctx: Any, prompt: str) -> dict[str, Any]:
            result = await pipeline.run(prompt, size="256x256", response_format="b64_json")
            served[result.provider] = served.get(result.provider, 0) + 1
            return {"provider": result.provider, "bytes": len(result.data)}

        async with Engine(f"sqlite:///{home / 'regen.db'}", home=home) as engine:
            started = time.perf_counter()
            run = await engine.run(flow)
            wall = time.perf_counter() - started
            counts = (await engine.detail(run.id)).items["illustrate"]
    await transport.aclose()
    return {"status": str(run.status), "wall_s": wall, "counts": counts, "served": served}


def outage_run(args: argparse.Namespace, *, fallback: bool) -> dict[str, Any]:
    """Start the simulators, run the batch, read the primary's stats; stop them."""
    sims = []
    outage = ["--outage-after", str(args.outage_after), "--outage-for", args.outage_for]
    primary, primary_url = start_sim("--latency", args.latency, *outage)
    sims.append(primary)
    try:
        backup_url = None
        if fallback:
            backup, backup_url = start_sim("--latency", args.latency)
            sims.append(backup)
        with tempfile.TemporaryDirectory(prefix="regen-outage-") as home:
            result = asyncio.run(
                run_batch(
                    primary=primary_url,
                    backup=backup_url,
                    items=args.items,
                    concurrency=args.concurrency,
                    home=Path(home),
                )
            )
        stats = sim_stats(primary_url)
        result["dead_calls"] = int(stats["outage"]["answered"])
        result["primary_requests"] = int(stats["requests"])
        if backup_url is not None:
            backup_stats = sim_stats(backup_url)
            result["backup_requests"] = int(backup_stats["requests"])
            result["backup_routes"] = {
                route: int(r["requests"]) for route, r in backup_stats["routes"].items()
            }
    finally:
        for process in sims:
            stop_server(process)
    return result


# --- phase 2: a rate limit shared by workers ---------------------------------------------------


PROVIDERS_FILE = """\
default = "limited"

[providers.limited]
kind = "openai"
base_url = "{base_url}"
api_key = "{key}"
image_model = "sim-image"

[providers.limited.policy]
attempts = {attempts}
timeout = 30
wait = {wait}
multiplier = {multiplier}
max_wait = {max_wait}

[providers.limited.limit]
rps = {rps:g}
"""


@contextlib.contextmanager
def fresh_postgres(url: str) -> Iterator[str]:
    """A new, empty database on the server of ``url`` (dropped afterwards): its URL."""
    import psycopg  # noqa: PLC0415 - the 'postgres' extra, only when asked

    name = f"regen_bench_outage_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{url.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    """``regen worker`` for the limited flow, in its own process; returns once it is ready."""
    command = [sys.executable, "-c", RUN_CLI, "worker", "--flow", "_limited_flow:flow"]
    command += ["--concurrency", str(RUNS_PER_WORKER), "--poll", "0.2", "--json"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if '"started"' not in line:
        process.kill()
        raise SystemExit(f"regen worker did not start: {line!r}")
    return process


def finished_runs(process: subprocess.Popen[str]) -> int:
    """Stop a worker; how many runs it finished, from its JSON lines."""
    process.terminate()
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return sum(1 for line in out.splitlines() if line.startswith('{"event": "finished"'))


async def queue_and_wait(database: str, home: Path, runs: int, per_run: int) -> float:
    """Queue ``runs`` runs of the limited flow, wait until every one has finished; the
    seconds from the first queued to the last finished."""
    from _limited_flow import flow  # noqa: PLC0415 - imports regen

    from regen.engine import Engine  # noqa: PLC0415

    async with Engine(database, home=home) as engine:
        started = time.perf_counter()
        ids = [
            (await engine.start(flow, {"batch": batch, "items": per_run})).run.id
            for batch in range(runs)
        ]
        while True:
            states = [await engine.get_run(run_id) for run_id in ids]
            if all(run.status.finished for run in states):
                break
            await asyncio.sleep(0.1)
        wall = time.perf_counter() - started
        for run in states:
            if str(run.status) != "succeeded":
                items = await engine.items(run.id, "illustrate", limit=10_000)
                errors = [i.errors[-1] for i in items if i.errors]
                raise SystemExit(
                    f"a limited run ended {run.status}: {len(errors)} images given up, "
                    f"the first {errors[:3]}"
                )
    return wall


def limited_run(args: argparse.Namespace, database: str, home: Path) -> dict[str, Any]:
    """Phase 2 on one database: the limited simulator, ``--workers`` workers, the runs."""
    sim, url = start_sim(
        "--latency", args.latency, "--rps", f"{SIM_RPS:g}", "--burst", str(SIM_BURST)
    )
    workers: list[subprocess.Popen[str]] = []
    try:
        providers = home / "regen.toml"
        providers.write_text(
            PROVIDERS_FILE.format(
                base_url=f"{url}/v1",
                key=KEY,
                attempts=ATTEMPTS,
                wait=FIRST_WAIT,
                multiplier=LAST_WAIT / FIRST_WAIT,
                max_wait=LAST_WAIT,
                rps=REGEN_RPS,
            ),
            encoding="utf-8",
        )
        here = str(Path(__file__).resolve().parent)
        env = {
            **os.environ,
            "REGEN_DATABASE_URL": database,
            "REGEN_HOME": str(home),
            "REGEN_PROVIDERS_FILE": str(providers),
            "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
        per_run = max(1, args.limited_items // (args.workers * RUNS_PER_WORKER))
        runs = args.workers * RUNS_PER_WORKER
        # The schema first (the parent's engine creates it), then the workers, then the runs.
        asyncio.run(queue_and_wait(database, home, 0, per_run))
        workers = [start_worker(env) for _ in range(args.workers)]
        wall = asyncio.run(queue_and_wait(database, home, runs, per_run))
        stats = sim_stats(url)
    finally:
        executed = [finished_runs(process) for process in workers]
        stop_server(sim)
    requests = int(stats["requests"])
    limited = int(stats["limit"]["answered"])
    return {
        "items": runs * per_run,
        "runs": runs,
        "requests": requests,
        "answered_429": limited,
        "runs_by_worker": executed,
        "wall_s": wall,
        "requests_per_s": requests / wall if wall else None,
        "rate_limit_429_share": limited / requests if requests else None,
    }


def limited_phase(args: argparse.Namespace) -> dict[str, Any]:
    """Phase 2 on SQLite, and on PostgreSQL when a URL is given."""
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="regen-limited-") as home:
        place = Path(home)
        found["sqlite"] = limited_run(args, f"sqlite:///{place / 'regen.db'}", place)
    if args.postgres:
        with (
            tempfile.TemporaryDirectory(prefix="regen-limited-") as home,
            fresh_postgres(args.postgres) as database,
        ):
            found["postgres"] = limited_run(args, database, Path(home))
    return found


# --- the report -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", default="100ms", help="simulated latency, e.g. 100ms")
    parser.add_argument("--outage-after", type=int, default=300, help="primary's N-th request")
    parser.add_argument("--outage-for", default="60s", help="how long the outage lasts")
    parser.add_argument(
        "--limited-items", type=int, default=480, help="phase 2's images (480: ~27 s at 18/s)"
    )
    parser.add_argument("--workers", type=int, default=4, help="phase 2's regen workers")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("REGEN_DATABASE_URL", "").strip() or None,
        metavar="URL",
        help="phase 2 on PostgreSQL too, in a fresh database on this server "
        "(default: REGEN_DATABASE_URL when it is a postgresql:// URL)",
    )
    parser.add_argument("--quick", action="store_true", help="a small, short run: a smoke test")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    if args.quick:
        args.items = min(args.items, 200)
        args.concurrency = min(args.concurrency, 16)
        args.latency = "20ms"
        args.outage_after = min(args.outage_after, 40)
        args.outage_for = "4s"
        args.limited_items = min(args.limited_items, 60)
        args.workers = min(args.workers, 2)
    if args.postgres and not args.postgres.startswith(("postgresql://", "postgres://")):
        args.postgres = None  # REGEN_DATABASE_URL naming an SQLite file: phase 2 on SQLite only
    from regen.sim import parse_duration  # noqa: PLC0415 - the parent stays light

    latency = parse_duration(args.latency)
    naive = outage_run(args, fallback=False)
    guarded = outage_run(args, fallback=True)
    limited = limited_phase(args)
    ideal = args.items * latency / args.concurrency
    dead_naive, dead = naive["dead_calls"], guarded["dead_calls"]
    figures: dict[str, Any] = {
        "items": args.items,
        "concurrency": args.concurrency,
        "latency_ms": latency * 1000,
        "outage_after": args.outage_after,
        "outage_for_s": parse_duration(args.outage_for),
        "workers": args.workers,
        "calls_to_dead_provider_naive": dead_naive,
        "calls_to_dead_provider": dead,
        "given_up_naive": naive["counts"].get("given_up", 0),
        "given_up": guarded["counts"].get("given_up", 0),
        "succeeded_naive": naive["counts"].get("succeeded", 0),
        "succeeded": guarded["counts"].get("succeeded", 0),
        "served_by": guarded["served"],
        "backup_routes": guarded.get("backup_routes", {}),
        "wall_naive_s": naive["wall_s"],
        "wall_s": guarded["wall_s"],
        "ideal_s": ideal,
        "dead_calls_vs_naive": dead / dead_naive if dead_naive else None,
        "wall_vs_ideal": guarded["wall_s"] / ideal if ideal else None,
        "limited": limited,
        # The worst of the databases phase 2 ran on.
        "rate_limit_429_share": max(r["rate_limit_429_share"] or 0.0 for r in limited.values()),
    }
    out = sys.stderr if args.json else sys.stdout
    print_table(figures, out)
    if args.json:
        ratios = {
            "dead_calls_vs_naive": figures["dead_calls_vs_naive"],
            "wall_vs_ideal": figures["wall_vs_ideal"],
            "rate_limit_429_share": figures["rate_limit_429_share"],
        }
        print(json.dumps({**figures, "ratios": ratios}))


def print_table(figures: dict[str, Any], out: Any) -> None:
    print(
        f"{figures['items']} images, concurrency {figures['concurrency']}, latency "
        f"{figures['latency_ms']:g} ms; the primary is down from its request "
        f"{figures['outage_after']} for {figures['outage_for_s']:g} s",
        file=out,
    )
    rows = [
        ("", "A: plain retries", "B: breaker + fallback"),
        (
            "calls to the dead provider",
            str(figures["calls_to_dead_provider_naive"]),
            str(figures["calls_to_dead_provider"]),
        ),
        ("given up", str(figures["given_up_naive"]), str(figures["given_up"])),
        ("succeeded", str(figures["succeeded_naive"]), str(figures["succeeded"])),
        ("wall", f"{figures['wall_naive_s']:.2f} s", f"{figures['wall_s']:.2f} s"),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)), file=out)
    served = ", ".join(f"{n} by {name}" for name, n in sorted(figures["served_by"].items()))
    print(
        f"B: images served {served}; ideal {figures['ideal_s']:.2f} s "
        f"(items × latency ÷ concurrency)",
        file=out,
    )
    ratio = figures["dead_calls_vs_naive"]
    print(
        f"dead_calls_vs_naive {ratio:.4f} (bar ≤ {BAR_DEAD_CALLS_VS_NAIVE}); given_up "
        f"{figures['given_up']} (bar 0); wall_vs_ideal {figures['wall_vs_ideal']:.3f} "
        f"(bar ≤ {BAR_WALL_VS_IDEAL})"
        if ratio is not None
        else "run A met no outage: no ratio",
        file=out,
    )
    print(
        f"\nshared rate limit: regen {REGEN_RPS:g}/s against a simulator allowing "
        f"{SIM_RPS:g}/s (burst {SIM_BURST})",
        file=out,
    )
    rows = [("database", "workers", "runs", "images", "requests", "429s", "req/s", "wall")]
    for name, r in figures["limited"].items():
        rows.append(
            (
                name,
                str(figures["workers"]),
                str(r["runs"]),
                str(r["items"]),
                str(r["requests"]),
                str(r["answered_429"]),
                f"{r['requests_per_s']:.1f}",
                f"{r['wall_s']:.1f} s",
            )
        )
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)), file=out)
    print(
        f"rate_limit_429_share {figures['rate_limit_429_share']:.4f} (bar ≤ {BAR_429_SHARE})",
        file=out,
    )


if __name__ == "__main__":
    main()
