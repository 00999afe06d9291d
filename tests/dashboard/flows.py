"""Flows the dashboard's browser tests watch: images from a map step, a step that fails
until a flag file is removed, a publish declared as an outside effect, streamed text."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from regen.engine import Flow, StepContext

# A 4×3 red PNG: a real image for the item grid's thumbnails.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAADCAIAAAA7ljmRAAAAFElEQVR4nGO8IyfHAANMDEgAhQMAKdIB"
    "HjGGQBcAAAAASUVORK5CYII="
)

album = Flow("album", params={"flag": str, "pause": float})


@album.step()
async def prompts(ctx: StepContext) -> list[str]:
    return ["一只猫在屋顶上", "<b>a dog</b> by the sea", "a bird"]


@album.map(items="prompts", concurrency=2)
async def draw(ctx: StepContext, prompt: str) -> Any:
    await asyncio.sleep(ctx.params["pause"])
    return {"prompt": prompt, "image": await ctx.artifacts.aput(PNG)}


@album.stream()
async def caption(ctx: StepContext) -> Any:
    for word in ["Three ", "pictures, ", "one ", "album."]:
        await asyncio.sleep(ctx.params["pause"] / 2)
        yield word


@album.step(side_effect=True)
def publish(ctx: StepContext) -> str:
    if Path(ctx.params["flag"]).exists():
        raise RuntimeError("the album service is down (remove the flag file)")
    return "published"
