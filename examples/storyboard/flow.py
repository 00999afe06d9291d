"""The text-to-image stage as a regen flow: ``validate`` → ``generate_images`` → ``finish``.

- ``validate`` makes seed 004's checks (a failure is an ``error`` event and a failed run,
  before any request), resolves the provider, creates the run's ``pending`` image records,
  marks the stage ``processing`` and groups storyboards that make the same request.
- ``generate_images`` is a map step over those requests, 3 at a time, each retried under
  ``IMAGE_POLICY`` (60 s per attempt) and served from regen's result cache when the same
  provider, model, prompt and parameters were generated before.
- ``finish`` fills in what came from the cache, counts, and ends the stage ``completed``,
  ``partial`` or ``failed``, with ``warning``/``stage_update``/``done`` events.

When every request gives up, regen fails the map step and ``finish`` never runs: the last
give-up ends the stage itself (see ``_on_give_up``). Retrying the run (``Engine.retry``)
re-runs only the requests that gave up; succeeded ones keep their images.

The steps share ``ctx.resources`` (:class:`~examples.storyboard.resources.StageResources`:
the records, one connection pool, the keys' environment): the
flow opens them from the run's params and the environment in whichever process executes
the run (``regen run examples.storyboard.flow:flow -p project_id=…``, ``regen worker``),
or the app passes its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from examples.storyboard import events
from examples.storyboard.generation import ProviderInfo, generate
from examples.storyboard.models import (
    IMAGE_COMPLETED,
    IMAGE_FAILED,
    STAGE_COMPLETED,
    STAGE_FAILED,
    STAGE_PARTIAL,
    STAGE_PROCESSING,
)
from examples.storyboard.records import Records, image_file_url
from examples.storyboard.resources import StageResources, open_resources
from examples.storyboard.validation import ValidationError, plan
from regen.engine import ArtifactRef, Cache, Flow, ItemStatus, Param, StepContext
from regen.retry import Attempt, Policy, classify, mask_secrets
from regen.store import StoreError

FLOW_NAME = "storyboard-text2image"
#: Images generated at once (the seed's ``batch_size = 3``).
CONCURRENCY = 3
MAP_STEP = "generate_images"


@dataclass(slots=True)
class _Item:
    """The map item running in this task: for the retry warning and the give-up hook."""

    ctx: StepContext
    group: Mapping[str, Any]
    last_error: str = ""


# Set by the map function in its item's task; the policy's give-up hook runs in the same
# task, after the last attempt, and reads it back.
_current_item: ContextVar[_Item | None] = ContextVar("storyboard_item", default=None)


def _on_give_up(attempt: Attempt) -> None:
    """An image request gave up: fail its records, say so, and end an all-failed stage."""
    item = _current_item.get()
    if item is None:  # the policy was used outside this flow's map step
        return
    ctx, storyboards = item.ctx, item.group["storyboards"]
    records = _records(ctx)
    message = (
        f"分镜 {_names(storyboards)} 图片生成失败（{attempt.kind}，"
        f"共尝试 {attempt.number} 次）：{attempt.message}"
    )
    records.fail_images([sb["image_id"] for sb in storyboards], message, attempt.number)
    for sb in storyboards:
        ctx.emit("error", events.error(message, sb["id"]))
    images = records.run_images(ctx.run_id)
    if images and all(image.status == IMAGE_FAILED for image in images):
        _finalize(ctx, records, ctx.results["validate"])


#: Per image: 3 attempts, 60 s each (generation and download), waits from 1 s doubling to
#: 30 s. ``STORYBOARD_IMAGE_MAX_ATTEMPTS``, ``_TIMEOUT_S``, ``_RETRY_SLEEP_S``… override.
IMAGE_POLICY = Policy.from_env(
    "STORYBOARD_IMAGE",
    attempts=3,
    timeout=60.0,
    wait=1.0,
    multiplier=2.0,
    max_wait=30.0,
    on_give_up=_on_give_up,
)

flow = Flow(
    FLOW_NAME,
    params={
        "project_id": str,
        "storyboard_ids": Param(
            object, default=None, help="ids to (re)generate; None for every storyboard"
        ),
        "home": Param(
            str,
            default="",
            help="the app's data directory (its storyboard.db); empty: $STORYBOARD_HOME, "
            "else $REGEN_HOME, else ./.regen",
        ),
    },
    description="Seed 004: generate an image for every storyboard of a project.",
    resources=open_resources,
)


def _resources(ctx: StepContext) -> StageResources:
    resources: StageResources = ctx.resources
    return resources


def _records(ctx: StepContext) -> Records:
    return _resources(ctx).records


def _names(storyboards: Sequence[Mapping[str, Any]]) -> str:
    return "、".join(f"#{sb['sequence_number']}" for sb in storyboards)


@flow.step()
async def validate(ctx: StepContext) -> dict[str, Any]:
    """Seed 004's checks, then the plan: provider, storyboards, distinct requests."""
    records = _records(ctx)
    try:
        checked = plan(
            records,
            ctx.params["project_id"],
            ctx.params["storyboard_ids"],
            ctx.run_id,
            environ=_resources(ctx).environ,
        )
    except ValidationError as exc:
        ctx.emit("error", events.error(exc.message))
        raise
    entries = checked.storyboards
    records.ensure_images(
        ctx.run_id,
        [(e["id"], e["position"]) for e in entries],
        {e["id"]: e["params"] for e in entries},
        checked.provider.name,
    )
    stage = records.start_stage(checked.project_id, ctx.run_id)
    ctx.emit("stage_update", events.stage_update(stage.to_event()))
    provider = checked.provider
    ctx.emit(
        "info",
        {
            "message": f"开始为 {len(entries)} 个分镜生成图片（提供商 {provider.name}，"
            f"模型 {provider.model_name}，并发 {CONCURRENCY}）"
        },
    )
    if provider.fallback:
        names = "、".join(other.name for other in provider.fallback)
        ctx.emit("info", {"message": f"{provider.name} 不可用时，由备用提供商 {names} 生成图片"})
    for group in checked.groups:
        if len(group["storyboards"]) > 1:
            ctx.emit(
                "info",
                {
                    "message": f"分镜 {_names(group['storyboards'])} 的提示词和参数"
                    "相同：只生成一次，共用这张图片"
                },
            )
    return {**checked.to_dict(), "stage_id": stage.id}


async def _begin(ctx: StepContext) -> list[dict[str, Any]]:
    """The map step's items (the plan's requests). Records that will run again go back to
    ``pending``; on a retry of the run, the stage starts again."""
    checked = ctx.results["validate"]
    records = _records(ctx)
    # Requests that gave up in an earlier execution of this step stay given up when a
    # process takes the run over; a retry has reopened them (they run again).
    kept: set[str] = set()
    async for item in ctx.items(MAP_STEP, status=ItemStatus.GIVEN_UP):
        kept.add(str(item.key))
    keep = [
        sb["image_id"]
        for group in checked["groups"]
        if group["id"] in kept
        for sb in group["storyboards"]
    ]
    again = records.reset_unfinished(ctx.run_id, keep=keep)
    stage = records.stage(checked["project_id"])
    if stage is None or stage.run_id != ctx.run_id or stage.status != STAGE_PROCESSING:
        stage = records.start_stage(checked["project_id"], ctx.run_id)
        ctx.emit("stage_update", events.stage_update(stage.to_event()))
        ctx.emit("info", {"message": f"重试：重新生成 {again} 个未成功的分镜，已成功的保留"})
    elif again:
        ctx.emit("info", {"message": f"继续：重新生成 {again} 个中断时未完成的分镜"})
    return list(checked["groups"])


def _cache_key(ctx: StepContext, group: Mapping[str, Any]) -> Any:
    return group["key"]  # provider, its URL, model, prompt, parameters


@flow.map(
    items=_begin,
    concurrency=CONCURRENCY,
    policy=IMAGE_POLICY,
    cache=Cache(key=_cache_key),
    key=lambda group: group["id"],
)
async def generate_images(ctx: StepContext, group: dict[str, Any]) -> dict[str, Any]:
    """One attempt at one request's image; the storyboards sharing it get it too."""
    item = _current_item.get()
    if item is None or item.ctx is not ctx:
        item = _Item(ctx, group)
        _current_item.set(item)
    attempt = ctx.attempt  # 1, 2, … (regen counts an item's attempts)
    checked = ctx.results["validate"]
    total = len(checked["storyboards"])
    storyboards = group["storyboards"]
    if attempt == 1:
        for sb in storyboards:
            message = f"正在生成第 {sb['position']}/{total} 张图片（分镜 #{sb['sequence_number']}）"
            ctx.emit("progress", events.progress(sb, total, message))
    else:
        message = (
            f"分镜 {_names(storyboards)} 第 {attempt - 1} 次生成失败"
            f"（{item.last_error}），正在第 {attempt} 次尝试"
        )
        ctx.emit("warning", {"message": message})
    resources = _resources(ctx)
    records = resources.records
    records.mark_processing([sb["image_id"] for sb in storyboards], attempt)
    provider = ProviderInfo.from_dict(checked["provider"])
    try:
        generated = await generate(
            provider,
            group["prompt"],
            group["params"],
            transport=resources.transport,
            environ=resources.environ,
            state=resources.provider_state,
        )
    except asyncio.CancelledError:
        item.last_error = "timeout: 超时未完成"
        raise
    except Exception as exc:
        item.last_error = mask_secrets(f"{classify(exc).kind}: {exc}")
        raise
    info = generated.image.info
    ref = ctx.artifacts.put(generated.image.data, info.media_type)
    output = {
        "artifact": ref,
        "url": generated.url,
        "width": info.width,
        "height": info.height,
        "file_size": info.bytes,
        "content_type": info.media_type,
        "revised_prompt": generated.revised_prompt,
        "attempts": attempt,
        "provider": generated.provider,
    }
    if generated.provider != provider.name:
        ctx.emit(
            "info",
            {
                "message": f"分镜 {_names(storyboards)} 的图片由备用提供商 "
                f"{generated.provider} 生成：{provider.name} 暂不可用"
            },
        )
    _complete(ctx, records, storyboards, output, cached=False)
    return output


def _complete(
    ctx: StepContext,
    records: Records,
    storyboards: Sequence[Mapping[str, Any]],
    output: Mapping[str, Any],
    *,
    cached: bool,
) -> None:
    artifact = output["artifact"]
    sha = artifact.sha256 if isinstance(artifact, ArtifactRef) else str(artifact["artifact"])
    path = ctx.artifacts.path(sha)
    # The records point at the app's own file route (see Records.complete_images), not at
    # the gateway's URL: that one expires, and a cached image would hand out another run's.
    records.complete_images(
        [sb["image_id"] for sb in storyboards],
        width=output["width"],
        height=output["height"],
        file_size=output["file_size"],
        artifact_sha256=sha,
        file_path=str(path),
        cached=cached,
        attempts=0 if cached else output["attempts"],
        model_provider=output.get("provider"),  # the provider that made it
    )
    for sb in storyboards:
        ctx.emit(
            "image_generated",
            events.image_generated(
                sb["id"],
                sb["image_id"],
                image_file_url(sb["image_id"]),
                output["width"],
                output["height"],
            ),
        )


@flow.step()
async def finish(ctx: StepContext) -> dict[str, Any]:
    """Records for cached results, then the stage's end: counts, status, ``done``."""
    checked = ctx.results["validate"]
    records = _records(ctx)
    total = len(checked["storyboards"])
    completed = {i.id for i in records.run_images(ctx.run_id) if i.status == IMAGE_COMPLETED}
    groups = {group["id"]: group for group in checked["groups"]}
    async for item in ctx.items(MAP_STEP):  # the requests that succeeded
        todo = [
            sb for sb in groups[str(item.key)]["storyboards"] if sb["image_id"] not in completed
        ]
        if not todo:
            continue
        # Served from the result cache: the map function did not run for it.
        for sb in todo:
            ctx.emit(
                "progress",
                events.progress(
                    sb,
                    total,
                    f"分镜 #{sb['sequence_number']} 复用已生成的相同图片"
                    f"（{sb['position']}/{total}）",
                ),
            )
        try:
            # Linking the bytes to this run keeps them while its records point at them.
            ctx.artifacts.put(ctx.artifacts.read(item.output["artifact"]))
        except StoreError as exc:
            message = f"分镜 {_names(todo)} 的缓存图片已被清理：请重新生成（{exc}）"
            records.fail_images([sb["image_id"] for sb in todo], message, 0)
            for sb in todo:
                ctx.emit("error", events.error(message, sb["id"]))
            continue
        _complete(ctx, records, todo, item.output, cached=True)
    return _finalize(ctx, records, checked)


def _finalize(ctx: StepContext, records: Records, checked: Mapping[str, Any]) -> dict[str, Any]:
    """Count the run's images, end the stage, and announce it (once)."""
    images = records.run_images(ctx.run_id)
    ok = [image.id for image in images if image.status == IMAGE_COMPLETED]
    failed = len(images) - len(ok)
    status = STAGE_COMPLETED if not failed else (STAGE_PARTIAL if ok else STAGE_FAILED)
    data = {
        "total_storyboards": len(images),
        "success_count": len(ok),
        "failed_count": failed,
        "generated_image_ids": ok,
    }
    stage = records.stage(checked["project_id"])
    if stage is None or not records.finish_stage(
        stage.id, ctx.run_id, status, {**data, "status": status}
    ):
        return {**data, "status": status}  # already ended and announced
    shown = {**stage.to_event(), "status": status}
    if status == STAGE_COMPLETED:
        message = f"图片生成完成：{len(ok)} 个分镜全部成功"
    elif status == STAGE_PARTIAL:
        message = f"图片生成部分完成：成功 {len(ok)} 个，失败 {failed} 个"
        ctx.emit("warning", {"message": f"{failed} 个分镜的图片生成失败：可以只重新生成失败的分镜"})
    else:
        message = f"图片生成失败：{failed} 个分镜全部失败"
    ctx.emit("stage_update", events.stage_update(shown))
    ctx.emit("done", events.done(message, data, shown))
    return {**data, "status": status}
