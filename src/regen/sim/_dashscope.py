"""DashScope asynchronous text-to-image tasks: submit, then poll ``/api/v1/tasks/{id}``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from regen.sim._errors import bad_request, dashscope_error, dumps, fault_reply, refusal
from regen.sim._faults import FaultSpec
from regen.sim._images import parse_dashscope_size
from regen.sim._state import FileRef
from regen.sim._tasks import (
    FAILED,
    PENDING,
    SUCCEEDED,
    THROTTLE,
    UNKNOWN,
    Task,
    bind_submit_faults,
    poll_override,
)

if TYPE_CHECKING:
    from regen.sim._http import Ctx

_FAILURE_MESSAGES = {
    "InternalError": "An internal error has occured during execution, please try again later.",
    "DataInspectionFailed": "Output data may contain inappropriate content.",
    "InternalError.Timeout": "An internal timeout error has occured during execution.",
}


def identify_submit(ctx: Ctx) -> str | None:
    error = ctx.parse_json()
    if error is None:
        data = ctx.data
        model = data.get("model")
        ctx.ident.model = model if isinstance(model, str) else None
        inputs = data.get("input")
        prompt = inputs.get("prompt") if isinstance(inputs, dict) else None
        ctx.ident.prompt = prompt if isinstance(prompt, str) else None
    return error


async def submit(ctx: Ctx, parse_error: str | None) -> None:
    rid = ctx.request_id
    if parse_error is not None:
        await ctx.reply(bad_request("dashscope", parse_error, request_id=rid))
        return
    if (ctx.header(b"x-dashscope-async") or "").lower() != "enable":
        await ctx.reply(
            dashscope_error(
                403, "AccessDenied", "current user api does not support synchronous calls", rid
            )
        )
        return
    model = ctx.ident.model
    if not model:
        await ctx.reply(bad_request("dashscope", "Field required: model", request_id=rid))
        return
    if ctx.fault("unknown_model") or model not in ctx.state.models:
        ctx.record("unknown_model" if "unknown_model" in ctx.plan else "not_found")
        await ctx.reply(refusal("dashscope", "unknown_model", request_id=rid))
        return
    prompt = ctx.ident.prompt
    if not prompt:
        await ctx.reply(bad_request("dashscope", "Field required: input.prompt", request_id=rid))
        return
    for name in ("content_policy", "invalid_param"):
        spec = ctx.fault(name)
        if spec is not None:
            await ctx.reply(fault_reply("dashscope", spec, request_id=rid))
            return
    parameters = ctx.data.get("parameters") or {}
    if not isinstance(parameters, dict):
        await ctx.reply(bad_request("dashscope", "parameters must be an object", request_id=rid))
        return
    try:
        width, height = parse_dashscope_size(str(parameters.get("size", "1024*1024")))
    except ValueError as exc:
        await ctx.reply(
            bad_request(
                "dashscope", f"The size is not match the allowed size: {exc}", request_id=rid
            )
        )
        return
    n = parameters.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 4:
        await ctx.reply(
            bad_request(
                "dashscope", "Invalid parameter: n must be an integer from 1 to 4", request_id=rid
            )
        )
        return
    if ctx.fault("missing_fields"):
        await ctx.respond(200, dumps({"output": {"task_status": PENDING}, "request_id": rid}))
        return
    board = ctx.state.tasks
    task = board.add(
        Task(
            id=board.new_id("dashscope"),
            kind="dashscope",
            prompt=prompt,
            model=model,
            width=width,
            height=height,
            n=n,
            duration=ctx.state.config.task_seconds,
        )
    )
    bind_submit_faults(ctx, task)
    await ctx.respond(
        200, dumps({"output": {"task_status": PENDING, "task_id": task.id}, "request_id": rid})
    )


def _stamp(seconds: float) -> str:
    whole = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    return f"{whole}.{int(seconds * 1000) % 1000:03d}"


async def poll(ctx: Ctx, _parse_error: str | None) -> None:
    rid = ctx.request_id
    task = ctx.state.tasks.get(ctx.param)
    if task is None:
        await ctx.respond(
            200,
            dumps(
                {
                    "request_id": rid,
                    "output": {"task_id": ctx.param, "task_status": UNKNOWN},
                }
            ),
            outcome="unknown_task",
        )
        return
    override = poll_override(ctx, task)
    if override == THROTTLE:
        await ctx.reply(fault_reply("dashscope", FaultSpec("poll_rate_limit"), request_id=rid))
        return
    status = override or task.status()
    output: dict[str, Any] = {"task_id": task.id, "task_status": status}
    if status == UNKNOWN:
        await ctx.respond(200, dumps({"request_id": rid, "output": output}))
        return
    output["submit_time"] = _stamp(task.submitted_at)
    if status != PENDING:
        output["scheduled_time"] = _stamp(task.submitted_at + task.duration / 4)
    body: dict[str, Any] = {"request_id": rid, "output": output}
    if status == FAILED:
        code = task.failed or "InternalError"
        output.update(
            end_time=_stamp(time.time()),
            code=code,
            message=_FAILURE_MESSAGES.get(code, f"Task failed: {code}."),
            task_metrics={"TOTAL": task.n, "SUCCEEDED": 0, "FAILED": task.n},
        )
    elif status == SUCCEEDED:
        body["usage"] = _results(ctx, task, output)
    elif ctx.fault("missing_fields"):
        del output["task_status"]
    await ctx.respond(200, dumps(body))


def _results(ctx: Ctx, task: Task, output: dict[str, Any]) -> dict[str, int]:
    """Fill a SUCCEEDED ``output``; count the images as produced the first time."""
    missing = ctx.fault("missing_fields") is not None
    good = max(0, task.n - task.partial)
    results: list[dict[str, Any]] = []
    for variant in range(task.n):
        if variant >= good:
            results.append(
                {"code": "InternalError.Timeout", "message": "Image generation timed out."}
            )
            continue
        item: dict[str, Any] = {"orig_prompt": task.prompt, "actual_prompt": task.prompt}
        if not missing:
            ref = FileRef("png", task.prompt, task.width, task.height, variant)
            item["url"] = ctx.state.file_url(ctx.base_url, ref, task.image_faults)
        results.append(item)
    output.update(
        end_time=_stamp(time.time()),
        results=results,
        task_metrics={"TOTAL": task.n, "SUCCEEDED": good, "FAILED": task.n - good},
    )
    if not task.reported and not missing:
        task.reported = True
        ctx.state.stats.produced(task.prompt, good)
    return {"image_count": good}
