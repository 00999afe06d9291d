"""Chat requests per second through httpx, aiohttp and regen's transport, against a slow server.

The simulator runs as ``regen sim --latency 100ms`` in its own process on loopback; this
process sends ``--requests`` plain chat completions per run through four clients:

- ``httpx_shared``: one ``httpx.AsyncClient``, shared by every request;
- ``httpx_per_group``: one ``httpx.AsyncClient`` per group of 8 concurrent requests;
- ``aiohttp``: one ``aiohttp.ClientSession``;
- ``regen``: ``regen.providers.Transport``, the seam every adapter sends through (one
  shared aiohttp session, bodies read by the adapters' own code path).

in two ways of keeping ``--concurrency`` (64) requests in flight:

- ``workers``: 64 tasks each send one request at a time until the count is used up (the
  caller bounds the concurrency, as regen's map steps do); the clients keep their default
  limits (httpx: 100 connections, 20 kept alive; aiohttp: 100 connections).
- ``queued``: every request is handed to the client at once (``asyncio.gather``) and the
  client's pool, capped at 64 connections (8 per client per group), queues the rest.

The ceiling is concurrency ÷ latency (640 req/s at 64 and 100 ms). A warm-up opens the
connections first; each client is measured ``--repeat`` times, interleaved with the
others, and the median is reported. With ``--json`` the last line holds the figures and
``ratios``: ``aiohttp_vs_httpx_shared`` and ``regen_vs_aiohttp`` (workers), and the same
two prefixed ``queued_``.

    python benchmarks/transport.py            # a table
    python benchmarks/transport.py --json     # ... and a JSON object on the last line
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import aiohttp
import httpx
from _servers import start_sim, stop_server  # benchmarks/_servers.py, beside this script

from regen.providers import Transport

AUTH = {"Authorization": "Bearer sk-bench"}
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "Write about lighthouses"}]}
CHAT_BODY = json.dumps(CHAT).encode()
JSON_HEADERS = {**AUTH, "Content-Type": "application/json"}
GROUP = 8

# --- the clients -------------------------------------------------------------------------------


class Client(abc.ABC):
    """One way of sending the chat request; ``open`` before use, ``close`` after.

    ``limit`` caps the connections of the whole client (``None``: the library's defaults).
    """

    name = ""
    label = ""

    def __init__(self, url: str, concurrency: int, limit: int | None) -> None:
        self.url = f"{url}/v1/chat/completions"
        self.concurrency = concurrency
        self.limit = limit

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def send(self, slot: int) -> None:
        """One request on behalf of concurrency slot ``slot``, its body read."""

    @abc.abstractmethod
    async def close(self) -> None: ...


def httpx_client(limit: int | None) -> httpx.AsyncClient:
    if limit is None:
        return httpx.AsyncClient(timeout=120)
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    return httpx.AsyncClient(timeout=120, limits=limits)


class HttpxShared(Client):
    name = "httpx_shared"
    label = "one shared `httpx.AsyncClient`"

    async def open(self) -> None:
        self.client = httpx_client(self.limit)

    async def send(self, slot: int) -> None:
        response = await self.client.post(self.url, content=CHAT_BODY, headers=JSON_HEADERS)
        check(response.status_code)

    async def close(self) -> None:
        await self.client.aclose()


class HttpxPerGroup(Client):
    name = "httpx_per_group"
    label = f"one `httpx.AsyncClient` per task group of {GROUP}"

    async def open(self) -> None:
        groups = -(-self.concurrency // GROUP)
        share = None if self.limit is None else max(1, self.limit // groups)
        self.clients = [httpx_client(share) for _ in range(groups)]

    async def send(self, slot: int) -> None:
        client = self.clients[slot // GROUP]
        response = await client.post(self.url, content=CHAT_BODY, headers=JSON_HEADERS)
        check(response.status_code)

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


class Aiohttp(Client):
    name = "aiohttp"
    label = "one `aiohttp.ClientSession`"

    async def open(self) -> None:
        connector = (
            aiohttp.TCPConnector() if self.limit is None else aiohttp.TCPConnector(limit=self.limit)
        )
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        )

    async def send(self, slot: int) -> None:
        async with self.session.post(self.url, data=CHAT_BODY, headers=JSON_HEADERS) as response:
            await response.read()
            check(response.status)

    async def close(self) -> None:
        await self.session.close()


class Regen(Client):
    name = "regen"
    label = "regen's `Transport`"

    async def open(self) -> None:
        # Transport's own default pool is 256 connections; in ``workers`` mode it keeps it.
        self.transport = (
            Transport(timeout=120)
            if self.limit is None
            else Transport(timeout=120, limit=self.limit)
        )

    async def send(self, slot: int) -> None:
        response = await self.transport.request("POST", self.url, headers=AUTH, json=CHAT)
        check(response.status)

    async def close(self) -> None:
        await self.transport.aclose()


CLIENTS: tuple[type[Client], ...] = (HttpxShared, HttpxPerGroup, Aiohttp, Regen)
MODES = ("workers", "queued")


def check(status: int) -> None:
    if status != 200:
        raise SystemExit(f"the simulator answered HTTP {status}: this benchmark expects no faults")


async def run(client: Client, mode: str, requests: int) -> float:
    """Requests per second for ``requests`` requests sent the ``mode`` way."""
    concurrency = client.concurrency
    started = time.perf_counter()
    if mode == "queued":
        await asyncio.gather(*(client.send(n % concurrency) for n in range(requests)))
    else:
        left = requests

        async def worker(slot: int) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.send(slot)

        await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def measure(
    kind: type[Client], mode: str, url: str, requests: int, concurrency: int
) -> float:
    client = kind(url, concurrency, concurrency if mode == "queued" else None)
    await client.open()
    try:
        await run(client, mode, concurrency)  # the warm-up opens the connections
        return await run(client, mode, requests)
    finally:
        await client.close()


# --- the simulator ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency", default="100ms", help="simulated latency, e.g. 100ms")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--requests", type=int, default=640, help="measured requests per run")
    parser.add_argument("--repeat", type=int, default=2, help="measured runs per client")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    options = parser.parse_args()
    if options.concurrency < 1 or options.requests < 1 or options.repeat < 1:
        parser.error("--concurrency, --requests and --repeat must be at least 1")
    from regen.sim import parse_duration  # noqa: PLC0415 - only for the report

    latency = parse_duration(options.latency)
    ceiling = options.concurrency / latency if latency else None
    out = sys.stderr if options.json else sys.stdout
    runs: dict[str, dict[str, list[float]]] = {
        mode: {kind.name: [] for kind in CLIENTS} for mode in MODES
    }
    sim, url = start_sim("--latency", options.latency)
    try:
        with asyncio.Runner() as runner:
            for _ in range(options.repeat):
                for mode in MODES:
                    for kind in CLIENTS:
                        rate = runner.run(
                            measure(kind, mode, url, options.requests, options.concurrency)
                        )
                        runs[mode][kind.name].append(rate)
    finally:
        stop_server(sim)
    rps = {
        mode: {name: statistics.median(values) for name, values in by_client.items()}
        for mode, by_client in runs.items()
    }
    print(
        f"{options.requests} chat requests per run, {options.concurrency} in flight, "
        f"server latency {latency * 1000:g} ms"
        + (f" (ceiling {ceiling:.0f} req/s)" if ceiling else "")
        + f"; req/s, median of {options.repeat} run(s), each run in brackets:",
        file=out,
    )
    print(
        f"| client | workers (default limits) | queued (pool of {options.concurrency}) |",
        file=out,
    )
    print("|---|---:|---:|", file=out)
    for kind in CLIENTS:
        cells = [
            f"{rps[mode][kind.name]:.0f} ({', '.join(f'{v:.0f}' for v in runs[mode][kind.name])})"
            for mode in MODES
        ]
        print(f"| {kind.label} | {' | '.join(cells)} |", file=out)
    ratios: dict[str, float] = {}
    for mode in MODES:
        prefix = "" if mode == "workers" else f"{mode}_"
        ratios[f"{prefix}aiohttp_vs_httpx_shared"] = (
            rps[mode]["aiohttp"] / rps[mode]["httpx_shared"]
        )
        ratios[f"{prefix}regen_vs_aiohttp"] = rps[mode]["regen"] / rps[mode]["aiohttp"]
    print(", ".join(f"{name} {value:.2f}" for name, value in ratios.items()), file=out)
    if options.json:
        report: dict[str, Any] = {
            "latency_ms": latency * 1000,
            "concurrency": options.concurrency,
            "requests": options.requests,
            "repeat": options.repeat,
            "ceiling_rps": ceiling,
            "rps": rps,
            "runs": runs,
            "versions": {"httpx": httpx.__version__, "aiohttp": aiohttp.__version__},
            "ratios": ratios,
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
