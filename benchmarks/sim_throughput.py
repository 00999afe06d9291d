"""Requests per second the provider simulator serves, server and load in separate processes.

The simulator runs as ``regen sim`` in a subprocess (one process, one core); load comes
from ``--clients`` other processes running aiohttp clients (uvloop, keep-alive, bounded
concurrency and duration, loopback only) that start each run together and add up their
counts. Each scenario is warmed up, then run ``--repeat`` times for ``--duration``
seconds; the median is reported, with how busy the server's core was (below ~100%, the
clients rather than the server set the pace).

- ``chat``: ``POST /v1/chat/completions`` (plain).
- ``image``: ``POST /v1/images/generations`` (``url``) + ``GET`` of the 1024x1024 PNG.
- ``stream``: ``POST /v1/chat/completions`` with ``stream: true``, read to ``[DONE]``.
- ``dashscope_task``: a whole DashScope task: submit, poll every 20 ms until SUCCEEDED
  (tasks take 0.1 s of simulated time here), download the PNG.

``--starlette-baseline`` also serves a bare Starlette app (one chat route doing the same
work, same uvicorn settings) to compare the server stack.

    python benchmarks/sim_throughput.py            # a table
    python benchmarks/sim_throughput.py --json     # ... and a JSON object on the last line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _servers import (  # benchmarks/_servers.py, beside this script
    start_server,
    start_sim,
    stop_server,
)

BAR_CHAT_RPS = 1500
AUTH = {"Authorization": "Bearer sk-bench"}
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "Write about lighthouses"}]}
STREAM = {**CHAT, "stream": True}
# Bodies encoded once, so the clients spend their CPU on HTTP rather than on json.dumps.
JSON_HEADERS = {**AUTH, "Content-Type": "application/json"}
CHAT_BODY = json.dumps(CHAT).encode()
STREAM_BODY = json.dumps(STREAM).encode()
PROMPTS = [f"benchmark picture {i}" for i in range(16)]
TASK_SECONDS = 0.1
POLL_EVERY = 0.02

STARLETTE_APP = """
import sys, time, os, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from regen.sim._text import reply_words

async def chat(request):
    data = await request.json()
    prompt = data["messages"][-1]["content"]
    text = "".join(reply_words(prompt))
    return JSONResponse({"id": "chatcmpl-" + os.urandom(12).hex(), "object": "chat.completion",
        "created": int(time.time()), "model": data["model"], "choices": [{"index": 0,
        "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})

app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
print("ready", flush=True)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop",
            access_log=False, log_level="warning", proxy_headers=False)
"""

Operation = Callable[[aiohttp.ClientSession, str, int], Awaitable[None]]


async def chat(session: aiohttp.ClientSession, base: str, _n: int) -> None:
    async with session.post(
        f"{base}/v1/chat/completions", data=CHAT_BODY, headers=JSON_HEADERS
    ) as response:
        assert response.status == 200, response.status
        await response.read()


async def stream(session: aiohttp.ClientSession, base: str, _n: int) -> None:
    async with session.post(
        f"{base}/v1/chat/completions", data=STREAM_BODY, headers=JSON_HEADERS
    ) as response:
        assert response.status == 200, response.status
        body = await response.read()
        assert body.endswith(b"data: [DONE]\n\n")


async def image(session: aiohttp.ClientSession, base: str, n: int) -> None:
    body = {"prompt": PROMPTS[n % len(PROMPTS)], "size": "1024x1024"}
    async with session.post(f"{base}/v1/images/generations", json=body, headers=AUTH) as response:
        assert response.status == 200, response.status
        url = (await response.json())["data"][0]["url"]
    async with session.get(url) as download:
        assert download.status == 200, download.status
        await download.read()


async def dashscope_task(session: aiohttp.ClientSession, base: str, n: int) -> None:
    body = {
        "model": "wanx-v1",
        "input": {"prompt": PROMPTS[n % len(PROMPTS)]},
        "parameters": {"size": "1024*1024", "n": 1},
    }
    headers = {**AUTH, "X-DashScope-Async": "enable"}
    submit_url = f"{base}/api/v1/services/aigc/text2image/image-synthesis"
    async with session.post(submit_url, json=body, headers=headers) as response:
        assert response.status == 200, response.status
        task_id = (await response.json())["output"]["task_id"]
    while True:
        await asyncio.sleep(POLL_EVERY)
        async with session.get(f"{base}/api/v1/tasks/{task_id}", headers=AUTH) as response:
            output = (await response.json())["output"]
        if output["task_status"] == "SUCCEEDED":
            break
        assert output["task_status"] in ("PENDING", "RUNNING"), output
    async with session.get(output["results"][0]["url"]) as download:
        assert download.status == 200, download.status
        await download.read()


SCENARIOS: dict[str, Operation] = {
    "chat": chat,
    "image": image,
    "stream": stream,
    "dashscope_task": dashscope_task,
}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``), or ``None``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(operation: Operation, base: str, concurrency: int, seconds: float) -> float:
    """Completed operations per second over ``seconds``, ``concurrency`` at a time."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        done = 0
        counter = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, counter
            while time.perf_counter() < deadline:
                counter += 1
                await operation(session, base, counter)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Clients:
    """Load-generating processes, told what to run over stdin, answering on stdout."""

    def __init__(self, count: int) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def run(self, scenario: str, base: str, concurrency: int, seconds: float) -> float:
        """All clients run ``scenario`` over the same window; their summed rate."""
        start_at = time.time() + 0.3
        share = max(1, concurrency // len(self.processes))
        order = {"scenario": scenario, "base": base, "concurrency": share, "seconds": seconds}
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(json.dumps({**order, "start_at": start_at}) + "\n")
            process.stdin.flush()
        total = 0.0
        for process in self.processes:
            assert process.stdout is not None
            total += json.loads(process.stdout.readline())["rate"]
        return total

    def close(self) -> None:
        for process in self.processes:
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.close()
            process.wait(timeout=10)
            process.stdout.close()


def worker() -> None:
    """One load-generating process: read orders, run them, print rates."""
    with new_runner() as runner:
        for line in sys.stdin:
            order = json.loads(line)
            time.sleep(max(0.0, order["start_at"] - time.time()))
            rate = runner.run(
                measure(
                    SCENARIOS[order["scenario"]],
                    order["base"],
                    order["concurrency"],
                    order["seconds"],
                )
            )
            print(json.dumps({"rate": rate}), flush=True)


def new_runner() -> asyncio.Runner:
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def run_scenarios(
    clients: Clients, base: str, pid: int, names: list[str], options: argparse.Namespace
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        concurrency = options.concurrency if name != "dashscope_task" else options.task_concurrency
        clients.run(name, base, concurrency, options.warmup)
        runs, busy = [], []
        for _ in range(options.repeat):
            cpu_before, started = cpu_seconds(pid), time.perf_counter()
            runs.append(clients.run(name, base, concurrency, options.duration))
            cpu_after, elapsed = cpu_seconds(pid), time.perf_counter() - started - 0.3
            if cpu_before is not None and cpu_after is not None:
                busy.append((cpu_after - cpu_before) / elapsed)
        median = statistics.median(runs)
        # How busy the server's one core was: below ~1.0 the client, not the server, limits.
        share = statistics.median(busy) if busy else None
        results[name] = {
            "median": median,
            "runs": runs,
            "concurrency": concurrency,
            "server_cpu_share": share,
            "per_server_cpu_second": median / share if share else None,
        }
        shown = (
            f"; server core {share:.0%} busy, {median / share:.0f} per CPU-second" if share else ""
        )
        print(
            f"{name:>15}: {median:8.0f} /s   "
            f"(runs {', '.join(f'{r:.0f}' for r in runs)}; concurrency {concurrency}{shown})",
            file=sys.stderr if options.json else sys.stdout,
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per scenario")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per scenario")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument(
        "--task-concurrency", type=int, default=128, help="DashScope tasks in flight"
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument(
        "--starlette-baseline", action="store_true", help="also measure bare Starlette"
    )
    parser.add_argument("--clients", type=int, default=2, help="load-generating processes")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker()
        return
    names = [name for name in options.scenarios.split(",") if name]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {
            "duration_s": options.duration,
            "repeat": options.repeat,
            "concurrency": options.concurrency,
            "task_concurrency": options.task_concurrency,
            "clients": options.clients,
            "task_seconds": TASK_SECONDS,
            "poll_every_s": POLL_EVERY,
        },
    }
    server, base = start_sim("--task-seconds", str(TASK_SECONDS))
    clients = Clients(options.clients)
    try:
        results = run_scenarios(clients, base, server.pid, names, options)
        if options.starlette_baseline:
            port = free_port()
            baseline, _ = start_server([STARLETTE_APP, str(port)], "ready")
            try:
                time.sleep(0.5)
                results["starlette_chat_baseline"] = run_scenarios(
                    clients, f"http://127.0.0.1:{port}", baseline.pid, ["chat"], options
                )["chat"]
            finally:
                stop_server(baseline)
    finally:
        clients.close()
        stop_server(server)

    for name in SCENARIOS:
        if name in results:
            report[f"{name}_rps"] = round(results[name]["median"], 1)
    report["runs"] = results
    ratios: dict[str, float] = {}
    if "chat" in results:
        ratios["chat_rps_vs_bar"] = round(results["chat"]["median"] / BAR_CHAT_RPS, 3)
    if "starlette_chat_baseline" in results and "chat" in results:
        ours, theirs = results["chat"], results["starlette_chat_baseline"]
        ratios["chat_rps_vs_starlette"] = round(ours["median"] / theirs["median"], 3)
        if ours["per_server_cpu_second"] and theirs["per_server_cpu_second"]:
            ratios["chat_per_cpu_vs_starlette"] = round(
                ours["per_server_cpu_second"] / theirs["per_server_cpu_second"], 3
            )
    report["ratios"] = ratios
    if "chat" in results:
        verdict = "meets" if ratios["chat_rps_vs_bar"] >= 1 else "MISSES"
        print(
            f"chat {verdict} the bar of {BAR_CHAT_RPS} req/s ({ratios['chat_rps_vs_bar']:.2f}x)",
            file=sys.stderr if options.json else sys.stdout,
        )
    if options.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
