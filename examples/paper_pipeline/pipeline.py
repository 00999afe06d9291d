"""Seed 003's five steps as one regen flow, each checkpointed before the next starts::

    fetch_papers → openai_analyze → render_images → build_payload → publish_mcp

A step's return value is its checkpoint (seed 003's ``checkpoint.step_outputs``); later
steps read earlier ones from ``ctx.results``, whether they ran a moment ago or in an
execution that failed yesterday. What the steps talk to — the OpenAI-compatible provider,
the outbox — is their ``ctx.resources``: the flow opens its own from the environment
(:func:`~examples.paper_pipeline.resources.flow_resources`) in whichever process executes
the run, ``regen run`` and ``regen worker`` included, and
:class:`~examples.paper_pipeline.app.PaperPipeline` passes the ones it has. Never through
params: params are stored, keys must not be.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from examples.paper_pipeline.papers import papers_for
from examples.paper_pipeline.resources import Resources, flow_resources
from regen.engine import ArtifactRef, Flow, Param, StepContext
from regen.providers import ImagePipeline

T = TypeVar("T")
#: At most this many calls to the provider at once, per step.
CONCURRENCY = 4


def task_id(day: dt.date) -> str:
    """The business key of a day's run: one run per day, however it is started."""
    return f"task_publish_{day:%Y%m%d}"


def _day_key(params: Mapping[str, Any]) -> str:
    try:
        day = dt.date.fromisoformat(params["day"])
    except ValueError:
        raise ValueError(f"day={params['day']!r}: expected a date, YYYY-MM-DD") from None
    return task_id(day)


flow = Flow(
    "paper_pipeline",
    params={
        "day": Param(str, help="the day of the digest, YYYY-MM-DD"),
        "count": Param(int, default=3, help="how many papers to feature"),
        "feed": Param(str, default="", help="a JSON feed file; empty: the built-in list"),
    },
    max_retries=3,  # AUTO_RETRY_MAX_ATTEMPTS's default; the app passes the configured value
    retry_delay=30.0,  # AUTO_RETRY_DELAY_SECONDS
    resources=flow_resources,
    key=_day_key,  # `regen run … -p day=D` is the day's task too
    description="Daily paper digest with a checkpoint after every step",
)


async def _each(items: Iterable[Any], fn: Callable[[Any], Awaitable[T]]) -> list[T]:
    """``fn`` over ``items`` with bounded concurrency, results in order; the first failure
    cancels the rest and is raised as itself (its attempts intact for the run record)."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(item: Any) -> T:
        async with slots:
            return await fn(item)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def image_prompt(paper: dict[str, Any]) -> str:
    """The cover image's prompt for a paper (deterministic: tests script faults on it)."""
    return (
        f"Cover illustration for the paper {paper['id']} “{paper['title']}”: "
        "clean flat vector art, soft pastel colours, no text"
    )


@flow.step()
async def fetch_papers(ctx: StepContext) -> dict[str, Any]:
    """The day's papers from the feed."""
    res: Resources = ctx.resources
    res.inject("fetch_papers", "before")
    day = dt.date.fromisoformat(ctx.params["day"])
    papers = papers_for(day, ctx.params["count"], ctx.params["feed"] or None)
    ctx.log(f"{len(papers)} papers for {day}")
    res.inject("fetch_papers", "after")
    return {"papers": papers}


@flow.step()
async def openai_analyze(ctx: StepContext) -> dict[str, Any]:
    """A short note on each paper from the chat model (each call retried by its policy)."""
    res: Resources = ctx.resources
    res.inject("openai_analyze", "before")
    provider = res.chat_provider()

    async def analyze(paper: dict[str, Any]) -> dict[str, Any]:
        reply = await provider.chat(
            [
                {
                    "role": "system",
                    "content": "You write two-sentence notes on AI papers for a "
                    "daily digest, plain and accurate.",
                },
                {
                    "role": "user",
                    "content": f"Paper {paper['id']}: {paper['title']}\n\n{paper['abstract']}",
                },
            ]
        )
        return {
            "paper_id": paper["id"],
            "title": paper["title"],
            "summary": reply.text.strip(),
            "image_prompt": image_prompt(paper),
            "model": reply.model,
        }

    results = await _each(ctx.results["fetch_papers"]["papers"], analyze)
    res.inject("openai_analyze", "after")
    return {"results": results}


@flow.step()
async def render_images(ctx: StepContext) -> dict[str, Any]:
    """A cover image per paper: generated, downloaded and checked as one retried attempt,
    its bytes kept as a content-addressed artifact."""
    res: Resources = ctx.resources
    res.inject("render_images", "before")
    pipeline = ImagePipeline(res.chat_provider(), policy=res.image_policy)

    async def render(result: dict[str, Any]) -> dict[str, Any]:
        made = await pipeline.run(result["image_prompt"], size="1024x1024")
        ref = ctx.artifacts.put(made.data, made.image.info.media_type)
        ctx.emit(
            "image_generated",
            {"paper_id": result["paper_id"], "artifact": ref.sha256, "attempts": made.attempts},
        )
        return {
            "paper_id": result["paper_id"],
            "prompt": result["image_prompt"],
            "image": ref,
            "attempts": made.attempts,
            "errors": made.errors,
        }

    images = await _each(ctx.results["openai_analyze"]["results"], render)
    res.inject("render_images", "after")
    return {"images": images}


@flow.step()
async def build_payload(ctx: StepContext) -> dict[str, Any]:
    """The post: a title, and per paper its note and cover image."""
    res: Resources = ctx.resources
    res.inject("build_payload", "before")
    images = {i["paper_id"]: i["image"] for i in ctx.results["render_images"]["images"]}
    notes = []
    for result in ctx.results["openai_analyze"]["results"]:
        image = ArtifactRef.from_dict(images[result["paper_id"]])
        notes.append(
            {
                "paper_id": result["paper_id"],
                "title": result["title"],
                "summary": result["summary"],
                "image": image,
            }
        )
    payload = {
        "title": f"今日 AI 论文速递 {ctx.params['day']}",
        "day": ctx.params["day"],
        "notes": notes,
        "tags": ["AI", "论文", "每日速递"],
    }
    res.inject("build_payload", "after")
    return {"payload": payload}


@flow.step(side_effect=True)
async def publish_mcp(ctx: StepContext) -> dict[str, Any]:
    """Publish the post once: the engine's idempotency key for this step is stable across
    retries and take-overs, and the outbox keeps one post per key."""
    res: Resources = ctx.resources
    res.inject("publish_mcp", "before")
    published = res.outbox.publish(
        ctx.results["build_payload"]["payload"], idempotency_key=ctx.idempotency_key
    )
    ctx.emit("published", published.to_dict())
    res.inject("publish_mcp", "after")
    return published.to_dict()
