"""SSE fan-out: N subscribers follow one streaming run over ``regen serve``.

    .venv/bin/python benchmarks/sse_fanout.py [--subscribers 1000] [--duration 30]
        [--rate 20] [--json]

Three processes: ``regen serve`` (hosting the worker that executes the run), one client
process holding every subscriber's connection (aiohttp), and this one, which starts
them, queues the run and reads the figures. The run streams ``rate`` chunks of ~200 bytes
a second for ``duration`` seconds, starting once every subscriber is connected. Latency is
from the event's append (its ``at``) to its receipt by a subscriber, on the one clock of
this machine. ``missed_events``: chunks of the run that some subscriber never received.
Bar: ``p99_ms`` < 250 and ``missed_events`` = 0 with 1,000 subscribers at ≥ 19 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from regen.engine import Flow, Param
from regen.retry import Policy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# --- the run: a timed stream -------------------------------------------------------------

ticker = Flow(
    "ticker",
    params={
        "rate": Param(float, default=20.0),
        "duration": Param(float, default=30.0),
        "gate": Param(str, default=""),
    },
)


@ticker.stream(policy=Policy(attempts=1, timeout=None))
async def tick(ctx):
    p = ctx.params
    # The stream starts when the conductor creates the gate file (subscribers connected).
    while p["gate"] and not await asyncio.to_thread(Path(p["gate"]).exists):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    start = time.time()
    count = round(p["rate"] * p["duration"])
    pad = "x" * 180
    for i in range(count):
        # Each chunk is due at its place in the schedule: a late one does not shift the rest.
        delay = start + i / p["rate"] - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield f"{i:06d} {pad}"


# --- the subscribers: one client process ----------------------------------------------------


# One frame as the server writes it (id, type, then the event's JSON, ``at`` third).
_FRAME = re.compile(rb'id: (\d+)\nevent: ([^\n]+)\ndata: \{"run_id":"\w+","seq":\d+,"at":([^,]+),')


async def _subscribe(session: Any, url: str, connected: asyncio.Event, state: dict) -> dict:
    """Follow the stream to its ``end``: each chunk's seq and latency. Whole reads are
    parsed with one regex, so the client's parsing weighs little beside the server."""
    got: dict[int, float] = {}
    buffer = b""
    async with session.get(url, timeout=None) as response:
        state["open"] += 1
        if state["open"] == state["wanted"]:
            connected.set()
        async for data in response.content.iter_any():
            now = time.time()
            buffer += data
            cut = buffer.rfind(b"\n\n")
            if cut < 0:
                continue
            whole, buffer = buffer[: cut + 2], buffer[cut + 2 :]
            for seq, kind, at in _FRAME.findall(whole):
                if kind == b"chunk":
                    got[int(seq)] = now - float(at)
            if b"event: end\n" in whole:
                break
    return got


async def _clients(url: str, run_id: str, subscribers: int, ready_file: str) -> dict:
    import aiohttp  # noqa: PLC0415

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    state = {"open": 0, "wanted": subscribers}
    connected = asyncio.Event()
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [
            asyncio.create_task(
                _subscribe(session, f"{url}/api/runs/{run_id}/events", connected, state)
            )
            for _ in range(subscribers)
        ]
        await connected.wait()
        await asyncio.to_thread(Path(ready_file).write_text, "connected")
        results = await asyncio.gather(*tasks, return_exceptions=True)
    received = [r for r in results if isinstance(r, dict)]
    errors = [repr(r) for r in results if not isinstance(r, dict)]
    return {
        "latencies": [lat for r in received for lat in r.values()],
        "seen": [sorted(r) for r in received],
        "errors": errors[:5],
        "failed_subscribers": len(errors),
    }


# --- the conductor --------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--client", nargs=4, metavar=("URL", "RUN", "N", "READY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.client:
        url, run_id, n, ready = args.client
        clients = _clients(url, run_id, int(n), ready)
        try:  # the client's own cost weighs on the figures: uvloop keeps it low
            import uvloop  # noqa: PLC0415

            print(json.dumps(uvloop.run(clients)))
        except ImportError:
            print(json.dumps(asyncio.run(clients)))
        return
    figures = run(args.subscribers, args.duration, args.rate)
    if not args.json:
        for key, value in figures.items():
            print(f"{key:>16}: {value}")
    print(json.dumps(figures) if args.json else "")


def run(subscribers: int, duration: float, rate: float) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}"}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regen.cli",
                "--home",
                tmp,
                "serve",
                "--port",
                "0",
                "--flow",
                "sse_fanout:ticker",
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = re.search(r"http://[\d.]+:\d+", server.stdout.readline()).group(0)  # type: ignore[union-attr]
            http = httpx.Client(base_url=url, timeout=30)
            while True:
                try:
                    http.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            # The stream starts once every subscriber is connected.
            ready = Path(tmp) / "ready"
            params = {"rate": rate, "duration": duration, "gate": str(ready)}
            run_id = http.post("/api/runs", json={"flow": "ticker", "params": params}).json()[
                "run"
            ]["id"]
            began = time.time()
            client = subprocess.Popen(
                [sys.executable, __file__, "--client", url, run_id, str(subscribers), str(ready)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            while not ready.exists() and client.poll() is None:
                time.sleep(0.05)
            connected_s = time.time() - began
            out, _ = client.communicate(timeout=duration + 180)
            result = json.loads(out.strip().splitlines()[-1])
            log = _events(http, run_id)
        finally:
            server.terminate()
            server.communicate(timeout=30)
    chunks = [e for e in log if e["type"] == "chunk"]
    ids = [e["seq"] for e in chunks]
    span = chunks[-1]["at"] - chunks[0]["at"] if len(chunks) > 1 else float("nan")
    emit_rate = (len(chunks) - 1) / span if span else float("nan")
    seen = [set(s) for s in result["seen"]]
    missed = sum(1 for seq in ids if any(seq not in s for s in seen)) if seen else len(ids)
    latencies = result["latencies"]
    p50, p99 = _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000
    delivered = len(latencies)
    return {
        "subscribers": subscribers,
        "connected_s": round(connected_s, 2),
        "emit_rate": round(emit_rate, 2),
        "duration_s": round(span, 2),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "events_per_s": round(delivered / span, 1) if span else None,
        "missed_events": missed + (len(ids) if result["failed_subscribers"] else 0),
        "failed_subscribers": result["failed_subscribers"],
        "errors": result["errors"],
        "ratios": {
            "p99_vs_250ms": round(p99 / 250, 3),
            "emit_rate_vs_asked": round(emit_rate / rate, 3),
            "delivered_vs_expected": round(delivered / (len(ids) * subscribers), 4)
            if ids
            else None,
        },
    }


def _events(http: Any, run_id: str) -> list[dict[str, Any]]:
    """The run's whole log as JSON, read over its event stream."""
    events = []
    with http.stream("GET", f"/api/runs/{run_id}/events") as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                if "seq" in data:
                    events.append(data)
    return events


if __name__ == "__main__":
    main()
