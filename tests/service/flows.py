"""Flows the service tests serve (``tests.service.flows:NAME``), in-process and in a
``regen serve`` subprocess."""

from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path

from regen.engine import Flow, Param
from regen.retry import Policy, Retryable

# --- a streamed story: chunks, a gate file that holds it mid-stream, a cut attempt ---------

story = Flow(
    "story",
    params={
        "words": Param(int, default=6),
        "gate_at": Param(int, default=-1),
        "gate": Param(str, default=""),
        "cut_at": Param(int, default=-1),
        "delay": Param(float, default=0.0),
        "pad": Param(int, default=0),
    },
)


async def _wait_for(path: Path) -> None:
    # The gate is a file a test (or another process) creates: there is nothing to await.
    while not await asyncio.to_thread(path.exists):  # noqa: ASYNC110
        await asyncio.sleep(0.01)


@story.stream(policy=Policy(attempts=3, wait=0.0, timeout=None))
async def write(ctx):
    p = ctx.params
    for i in range(p["words"]):
        if i == p["gate_at"]:
            await _wait_for(Path(p["gate"]))
        if i == p["cut_at"] and ctx.attempt == 1:
            raise Retryable("stream cut", kind="connection")
        if p["delay"]:
            await asyncio.sleep(p["delay"])
        yield f"w{i} " + "." * p["pad"]


# --- seed 003's shape: checkpoints, a failing step, an outside effect, a map of images -----

pipeline = Flow(
    "pipeline",
    params={"fail_flag": Param(str, default=""), "images": Param(int, default=2)},
)


@pipeline.step()
async def fetch(ctx):
    return {"papers": ["a", "b"]}


@pipeline.step()
def analyze(ctx):
    flag = ctx.params["fail_flag"]
    if flag and Path(flag).exists():
        raise RuntimeError("analysis failed (the flag file exists)")
    return {"results": [p.upper() for p in ctx.results["fetch"]["papers"]]}


@pipeline.step(side_effect=True)
async def publish(ctx):
    return {"published": len(ctx.results["analyze"]["results"])}


@pipeline.map(items=lambda ctx: range(ctx.params["images"]), concurrency=2)
async def render(ctx, item):
    return (await ctx.artifacts.aput(png(item + 1, 1))).to_dict()


def png(width: int, height: int) -> bytes:
    """A real (grey) PNG of that size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
