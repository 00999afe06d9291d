"""A generic submit-and-poll photo/video API (the kind the family_photo example wraps in retries).

- ``POST /photo/v1/art-photos`` ``{"prompt", "style"?, "size"?: "1024x1024", "model"?}``
  → ``{"task_id", "status": "queued"}``; ``GET /photo/v1/tasks/{id}`` → the task.
- ``POST /photo/v1/videos`` ``{"prompt", "image_url"?, "duration"?: 1..10, "size"?}``
  → ``{"task_id", "status": "queued"}``; ``GET /photo/v1/videos/{id}`` → the task.

A task is ``{"task_id", "kind", "status": queued|processing|succeeded|failed,
"progress": 0..100, "result": {...} | null, "error": {"code", "message"} | null}``.
Videos take twice the configured task time; their file is an animated GIF.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regen.sim._errors import bad_request, dumps, fault_reply, not_found, refusal
from regen.sim._faults import FaultSpec
from regen.sim._images import parse_openai_size
from regen.sim._state import FileRef
from regen.sim._tasks import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    THROTTLE,
    UNKNOWN,
    Task,
    bind_submit_faults,
    poll_override,
)

if TYPE_CHECKING:
    from regen.sim._http import Ctx

_STATUS = {PENDING: "queued", RUNNING: "processing", SUCCEEDED: "succeeded", FAILED: "failed"}


def identify_submit(ctx: Ctx) -> str | None:
    error = ctx.parse_json()
    if error is None:
        prompt, model = ctx.data.get("prompt"), ctx.data.get("model")
        ctx.ident.prompt = prompt if isinstance(prompt, str) else None
        ctx.ident.model = model if isinstance(model, str) else None
    return error


async def submit(ctx: Ctx, parse_error: str | None) -> None:
    rid = ctx.request_id
    kind = "video" if ctx.route == "video_submit" else "photo"
    if parse_error is not None:
        await ctx.reply(bad_request("photo", parse_error, request_id=rid))
        return
    prompt = ctx.ident.prompt
    if not prompt:
        await ctx.reply(bad_request("photo", "Missing required field: prompt", request_id=rid))
        return
    model = ctx.ident.model or f"sim-{'video' if kind == 'video' else 'image'}"
    if ctx.fault("unknown_model") or model not in ctx.state.models:
        ctx.record("unknown_model" if "unknown_model" in ctx.plan else "not_found")
        await ctx.reply(refusal("photo", "unknown_model", request_id=rid, model=model))
        return
    for name in ("content_policy", "invalid_param"):
        spec = ctx.fault(name)
        if spec is not None:
            await ctx.reply(fault_reply("photo", spec, request_id=rid, model=model))
            return
    data = ctx.data
    try:
        width, height = parse_openai_size(
            str(data.get("size") or ("1280x720" if kind == "video" else "1024x1024"))
        )
    except ValueError as exc:
        await ctx.reply(bad_request("photo", str(exc), request_id=rid))
        return
    duration = data.get("duration", 5)
    if kind == "video" and (
        not isinstance(duration, int) or isinstance(duration, bool) or not 1 <= duration <= 10
    ):
        await ctx.reply(
            bad_request(
                "photo", "duration must be an integer number of seconds, 1 to 10", request_id=rid
            )
        )
        return
    if ctx.fault("missing_fields"):
        await ctx.respond(200, dumps({"status": "queued"}))
        return
    board = ctx.state.tasks
    seconds = ctx.state.config.task_seconds * (2 if kind == "video" else 1)
    task = board.add(
        Task(
            id=board.new_id("vid" if kind == "video" else "art"),
            kind=kind,
            prompt=prompt,
            model=model,
            width=width,
            height=height,
            n=1,
            duration=seconds,
            extra={"duration": duration, "style": data.get("style")}
            if kind == "video"
            else {"style": data.get("style")},
        )
    )
    bind_submit_faults(ctx, task)
    await ctx.respond(200, dumps({"task_id": task.id, "status": "queued"}))


async def poll(ctx: Ctx, _parse_error: str | None) -> None:
    rid = ctx.request_id
    kind = "video" if ctx.route == "video_task" else "photo"
    task = ctx.state.tasks.get(ctx.param)
    if task is None or task.kind != kind:
        await ctx.reply(not_found("photo", f"No {kind} task {ctx.param!r}.", request_id=rid))
        return
    override = poll_override(ctx, task)
    if override == THROTTLE:
        await ctx.reply(fault_reply("photo", FaultSpec("poll_rate_limit"), request_id=rid))
        return
    status = override or task.status()
    if status == UNKNOWN:
        ctx.record("task_unknown")
        await ctx.reply(
            not_found(
                "photo", f"No {kind} task {ctx.param!r} (expired or unknown).", request_id=rid
            )
        )
        return
    body: dict[str, Any] = {
        "task_id": task.id,
        "kind": kind,
        "status": _STATUS[status],
        "progress": task.progress() if override is None else min(task.progress(), 95),
        "result": None,
        "error": None,
    }
    if status == FAILED:
        code = task.failed or "internal_error"
        body["error"] = {"code": code, "message": f"The {kind} could not be generated ({code})."}
    elif status == SUCCEEDED:
        body["result"] = _result(ctx, task)
    elif ctx.fault("missing_fields"):
        del body["status"]
    await ctx.respond(200, dumps(body))


def _result(ctx: Ctx, task: Task) -> dict[str, Any]:
    missing = ctx.fault("missing_fields") is not None
    result: dict[str, Any] = {"width": task.width, "height": task.height}
    still = ctx.state.file_url(
        ctx.base_url, FileRef("png", task.prompt, task.width, task.height), task.image_faults
    )
    if task.kind == "video":
        result["duration"] = task.extra.get("duration", 5)
        result["format"] = "gif"
        result["cover_url"] = still
        if not missing:
            ref = FileRef("gif", task.prompt, task.width, task.height)
            result["video_url"] = ctx.state.file_url(ctx.base_url, ref, task.image_faults)
    elif not missing:
        result["image_url"] = still
    if not task.reported and not missing:
        task.reported = True
        ctx.state.stats.produced(task.prompt)
    return result
