"""Seed 003's REST routes on the pipeline::

    POST /api/tasks/{task_id}/retry               retry from the failed step
    POST /api/tasks/{task_id}/retry/{step_name}   retry from that step (it and later ones)
    GET  /api/tasks/{task_id}/checkpoint          the task record with its checkpoint

A retry answers at once with the task record (status ``queued``) and executes in the
background; it names the steps it runs again, and says so when one of them acts outside
(``publish_mcp`` publishes: declared ``side_effect=True``; its outbox keeps one post per
idempotency key, so a re-run publishes nothing twice, yet the answer says it runs again).

    uvicorn examples.paper_pipeline.fastapi_app:app

(the pipeline opened with the app: a real provider when ``OPENAI_API_KEY`` is set, else the
simulator), or ``create_app(pipeline)`` on a pipeline you opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from examples.paper_pipeline.app import PaperPipeline, TaskExpired, TaskNotFound
from examples.paper_pipeline.config import Config
from examples.paper_pipeline.pipeline import flow
from examples.paper_pipeline.tasks import task_record
from regen.engine import FlowError, InvalidTransition, RunDetail, StepStatus


def rerun_plan(detail: RunDetail, from_step: str | None) -> dict[str, Any]:
    """The steps a retry runs again, and those of them with an outside effect that ran."""
    if from_step is None:
        again = [s for s in detail.steps if s.status is not StepStatus.SUCCEEDED]
    else:
        start = next(s.position for s in detail.steps if s.name == from_step)
        again = [s for s in detail.steps if s.position >= start]
    effects = {spec.name for spec in flow.steps if spec.side_effect}
    repeated = [s.name for s in again if s.name in effects and s.status is not StepStatus.PENDING]
    return {
        "reruns": [s.name for s in again],
        "side_effects": repeated,
        "warning": (
            f"this retry runs {', '.join(repeated)} again, which acts outside the pipeline"
            if repeated
            else None
        ),
    }


def create_app(pipeline: PaperPipeline | None = None, *, config: Config | None = None) -> FastAPI:
    """The seed's task routes on ``pipeline`` (retries execute with its provider); without
    one, the app opens its own (on ``config``) while it runs."""
    opened: dict[str, PaperPipeline] = {}
    running: set[asyncio.Task[Any]] = set()

    async def interrupt_retries() -> None:
        """The server stops: retries still executing are interrupted, their tasks left
        ``failed`` at the step they were in and resumable by a retry (not ``running``
        until their lease ran out), before the pipeline closes."""
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        if pipeline is not None:
            opened["pipeline"] = pipeline
            try:
                yield
            finally:
                await interrupt_retries()
            return
        async with PaperPipeline.open(config) as own:
            opened["pipeline"] = own
            try:
                yield
            finally:
                await interrupt_retries()

    api = FastAPI(title="paper pipeline on regen", lifespan=lifespan)

    async def _errors(_request: Request, exc: Exception) -> JSONResponse:
        status = {TaskNotFound: 404, InvalidTransition: 409, TaskExpired: 409}.get(type(exc), 422)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    for kind in (TaskNotFound, TaskExpired, InvalidTransition, FlowError):
        api.add_exception_handler(kind, _errors)

    async def _retry(task_id: str, step_name: str | None) -> dict[str, Any]:
        pipeline = opened["pipeline"]
        run = await pipeline.find(task_id)
        if step_name is not None:
            flow.step_named(step_name)
        plan = rerun_plan(await pipeline.engine.detail(run.id), step_name)
        queued = await pipeline.queue_retry(run.id, from_step=step_name)
        task = asyncio.create_task(pipeline.execute(queued.id))
        running.add(task)  # kept until it ends: a task nobody holds may be collected
        task.add_done_callback(running.discard)
        return {"task": task_record(await pipeline.engine.detail(queued.id)), **plan}

    @api.post("/api/tasks/{task_id}/retry")
    async def retry_task(task_id: str) -> dict[str, Any]:
        """Retry a failed task from its failed step (earlier checkpoints kept)."""
        return await _retry(task_id, None)

    @api.post("/api/tasks/{task_id}/retry/{step_name}")
    async def retry_task_from(task_id: str, step_name: str) -> dict[str, Any]:
        """Retry a task from ``step_name``: it and every later step run again."""
        return await _retry(task_id, step_name)

    @api.get("/api/tasks/{task_id}/checkpoint")
    async def checkpoint(task_id: str) -> dict[str, Any]:
        """The task's record: status, resumable, last successful and failed step, the
        checkpoint (papers, analyses, each step's output), retry counts."""
        return await opened["pipeline"].record(task_id)

    return api


app = create_app()
