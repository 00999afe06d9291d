"""REST routes for runs: start, list, inspect, cancel, delete, retry, checkpoints, items."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from regen.engine import Engine, FlowNotFound, ItemStatus, RunStatus
from regen.service._convert import item_json, run_json
from regen.service._models import (
    CheckpointOut,
    ItemPage,
    Problem,
    RetryOut,
    RunOut,
    RunPage,
    StartedOut,
    StartRun,
)
from regen.service._retry import plan

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such run (or flow)."},
    409: {"model": Problem, "description": "The run's status forbids it."},
    422: {"model": Problem, "description": "The request does not fit."},
}


def runs_router(engine: Engine) -> APIRouter:
    """The ``/api/runs`` routes on ``engine``."""
    api = APIRouter(prefix="/api/runs", tags=["runs"], responses=_ERRORS)

    @api.post("", response_model=StartedOut, status_code=status.HTTP_201_CREATED)
    async def start_run(body: StartRun, response: Response) -> dict[str, Any]:
        """Queue a run of a served flow. With a business ``key``, the key's run is returned
        instead when it exists (200), as :meth:`Engine.start` does."""
        served = engine.registry.names()
        if body.flow not in served:
            raise FlowNotFound(
                f"flow {body.flow!r} is not served here; served flows: "
                f"{', '.join(served) or 'none'} (start the server with --flow MODULE:FLOW)"
            )
        started = await engine.start(body.flow, body.params, key=body.key, on_failed=body.on_failed)
        if not started.created:
            response.status_code = status.HTTP_200_OK
        return {
            "run": run_json(started.run),
            "created": started.created,
            "retried": started.retried,
        }

    @api.get("", response_model=RunPage)
    async def list_runs(
        run_status: Annotated[
            list[RunStatus] | None, Query(alias="status", description="Only these statuses.")
        ] = None,
        flow: Annotated[str | None, Query(max_length=200)] = None,
        before: Annotated[
            float | None, Query(description="Only runs created before (seconds since the epoch).")
        ] = None,
        since: Annotated[
            float | None, Query(description="Only runs created at or after this time.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Runs, newest first, a page at a time (pass ``next_before`` as ``before``)."""
        runs = await engine.list_runs(status=run_status, flow=flow, before=before, limit=limit)
        full = len(runs) == limit
        if since is not None:
            kept = [r for r in runs if r.created_at >= since]
            full = full and len(kept) == len(runs)
            runs = kept
        return {
            "runs": [run_json(r) for r in runs],
            "next_before": runs[-1].created_at if full and runs else None,
        }

    @api.get("/{run_id}")
    async def run_detail(run_id: str) -> dict[str, Any]:
        """The run with its steps, their checkpoints and item counts, and what a retry
        would do (``resumable``, ``failed_step``)."""
        return (await engine.detail(run_id)).to_dict()

    @api.post("/{run_id}/cancel", response_model=RunOut)
    async def cancel_run(run_id: str) -> dict[str, Any]:
        """Cancel a queued run at once; a running one stops at its next safe point."""
        await engine.get_run(run_id)
        return run_json(await engine.cancel(run_id))

    @api.delete(
        "/{run_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses={409: {"model": Problem, "description": "The run is not over: cancel it."}},
    )
    async def delete_run(run_id: str) -> Response:
        """Delete a finished run with its steps, items and events (its artifacts go at the
        next clean-up if no other run uses them). A run still queued, running or waiting
        for an automatic retry is refused with 409: cancel it first."""
        await engine.delete(run_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    _retries(api, engine)
    _reads(api, engine)
    return api


def _retries(api: APIRouter, engine: Engine) -> None:
    async def _retry(run_id: str, step: str | None) -> dict[str, Any]:
        detail = await engine.detail(run_id)
        names = [s.name for s in detail.steps]
        if step is not None and step not in names:
            raise HTTPException(
                422, f"run {run_id} has no step {step[:80]!r}; its steps: {', '.join(names)}"
            )
        retry_plan = plan(engine, detail, step)
        run = await engine.retry(run_id, from_step=step)
        return {
            "run": run_json(run),
            "from_step": step,
            "reruns": retry_plan.reruns,
            "side_effects": retry_plan.side_effects,
            "warning": retry_plan.warning,
        }

    @api.post("/{run_id}/retry", response_model=RetryOut)
    async def retry_run(run_id: str) -> dict[str, Any]:
        """Queue a failed or partial run again from its failed step (succeeded steps and
        items kept)."""
        return await _retry(run_id, None)

    @api.post("/{run_id}/retry/{step}", response_model=RetryOut)
    async def retry_run_from(run_id: str, step: str) -> dict[str, Any]:
        """Queue the run again from ``step``: it and every later step run again."""
        return await _retry(run_id, step)


def _reads(api: APIRouter, engine: Engine) -> None:
    @api.get("/{run_id}/checkpoint", response_model=CheckpointOut)
    async def checkpoint(run_id: str) -> dict[str, Any]:
        """Each succeeded step's checkpointed output, and where a retry would resume."""
        detail = (await engine.detail(run_id)).to_dict()
        return {
            "run_id": run_id,
            "status": detail["status"],
            "resumable": detail["resumable"],
            "last_successful_step": detail["last_successful_step"],
            "failed_step": detail["failed_step"],
            "step_outputs": detail["checkpoint"]["step_outputs"],
        }

    @api.get("/{run_id}/items", response_model=ItemPage)
    async def items(
        run_id: str,
        step: Annotated[
            str | None, Query(max_length=200, description="A map step (default: the only one).")
        ] = None,
        item_status: Annotated[ItemStatus | None, Query(alias="status")] = None,
        after: Annotated[int, Query(ge=-1, description="The last ``idx`` seen.")] = -1,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """A map step's items in order, a page at a time (pass ``next_after`` as
        ``after``)."""
        detail = await engine.detail(run_id)
        maps = [s.name for s in detail.steps if s.kind == "map"]
        if step is None:
            if len(maps) != 1:
                raise HTTPException(
                    422,
                    f"run {run_id} has {len(maps)} map steps; name one with ?step= "
                    f"({', '.join(maps) or 'none'})",
                )
            step = maps[0]
        elif step not in maps:
            raise HTTPException(
                422,
                f"run {run_id} has no map step {step[:80]!r}; map steps: "
                f"{', '.join(maps) or 'none'}",
            )
        found = await engine.items(run_id, step, status=item_status, after=after, limit=limit)
        return {
            "step": step,
            "items": [item_json(i) for i in found],
            "next_after": found[-1].idx if len(found) == limit else None,
        }
