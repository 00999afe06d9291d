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
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _servers import start_sim, stop_server  # benchmarks/_servers.py, beside this script

BAR_DEAD_CALLS_VS_NAIVE = 0.05
BAR_WALL_VS_IDEAL = 1.5
BAR_429_SHARE = 0.01
KEY = "sk-bench-outage"
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
            return (f"news photo {i}" for i in range(items))

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


# --- the report -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", default="100ms", help="simulated latency, e.g. 100ms")
    parser.add_argument("--outage-after", type=int, default=300, help="primary's N-th request")
    parser.add_argument("--outage-for", default="60s", help="how long the outage lasts")
    parser.add_argument("--quick", action="store_true", help="a small, short run: a smoke test")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    if args.quick:
        args.items = min(args.items, 200)
        args.concurrency = min(args.concurrency, 16)
        args.latency = "20ms"
        args.outage_after = min(args.outage_after, 40)
        args.outage_for = "4s"
    from regen.sim import parse_duration  # noqa: PLC0415 - the parent stays light

    latency = parse_duration(args.latency)
    naive = outage_run(args, fallback=False)
    guarded = outage_run(args, fallback=True)
    ideal = args.items * latency / args.concurrency
    dead_naive, dead = naive["dead_calls"], guarded["dead_calls"]
    figures: dict[str, Any] = {
        "items": args.items,
        "concurrency": args.concurrency,
        "latency_ms": latency * 1000,
        "outage_after": args.outage_after,
        "outage_for_s": parse_duration(args.outage_for),
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
    }
    out = sys.stderr if args.json else sys.stdout
    print_table(figures, out)
    if args.json:
        ratios = {
            "dead_calls_vs_naive": figures["dead_calls_vs_naive"],
            "wall_vs_ideal": figures["wall_vs_ideal"],
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


if __name__ == "__main__":
    main()
