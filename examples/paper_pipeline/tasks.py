"""Seed 003's task record (its ``data/tasks.json`` entry), read from regen's run detail.

Nothing here stores anything: the engine checkpoints every step in its own store, and
these functions only present a run in the shape of the seed's task record::

    {"task_id": "task_publish_20251229", "status": "failed", "resumable": true,
     "last_successful_step": "openai_analyze", "failed_step": "render_images",
     "checkpoint": {"papers_data": [...], "analyzed_results": [...],
                    "step_outputs": {"fetch_papers": {"papers": [...], "timestamp": "..."},
                                     "openai_analyze": {"results": [...], "timestamp": "..."}}},
     "retry_count": 0, "max_retries": 3, "steps": [...]}
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from regen import RegenError
from regen.engine import Engine, RunDetail, RunStatus, StepStatus


class ClearRefused(RegenError):
    """A task's checkpoints cannot be cleared now (it runs, or it succeeded)."""


def iso(seconds: float | None) -> str | None:
    """A timestamp as ISO 8601 (UTC), as the seed writes them."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def step_outputs(detail: RunDetail) -> dict[str, dict[str, Any]]:
    """Checkpointed outputs by step, each with its ``timestamp`` (seed 003's shape)."""
    outputs: dict[str, dict[str, Any]] = {}
    for step in detail.steps:
        if step.checkpointed_at is None or step.output is None:
            continue
        value = step.output if isinstance(step.output, dict) else {"output": step.output}
        outputs[step.name] = {**value, "timestamp": iso(step.checkpointed_at)}
    return outputs


def task_record(detail: RunDetail) -> dict[str, Any]:
    """The seed's task record for a run.

    ``retry_count`` counts the automatic retries (those ``max_retries`` bounds),
    ``manual_retry_count`` the retries asked for (clearing the checkpoints is one).
    """
    run = detail.run
    outputs = step_outputs(detail)
    waiting = run.status is RunStatus.FAILED and run.retry_at is not None
    return {
        "task_id": run.business_key or run.id,
        "run_id": run.id,
        "status": str(run.status),
        "resumable": detail.resumable,
        "last_successful_step": detail.last_successful_step,
        "failed_step": detail.failed_step,
        "checkpoint": {
            "papers_data": outputs.get("fetch_papers", {}).get("papers", []),
            "analyzed_results": outputs.get("openai_analyze", {}).get("results", []),
            "step_outputs": outputs,
        },
        "retry_count": run.auto_retries,
        "max_retries": run.max_retries,
        "manual_retry_count": run.retry_count - run.auto_retries,
        "next_auto_retry_at": iso(run.retry_at) if waiting else None,
        "checkpoints_expired": run.checkpoints_expired,
        "process_lost": run.lease_expired(time.time()),
        "error": run.error,
        "params": run.params,
        "created_at": iso(run.created_at),
        "finished_at": iso(run.finished_at),
        "steps": [
            {
                "name": s.name,
                "status": str(s.status),
                "started_at": iso(s.started_at),
                "finished_at": iso(s.finished_at),
                "error": s.error,
            }
            for s in detail.steps
        ],
    }


class CheckpointManager:
    """The seed's ``CheckpointManager``, as a thin read-only view over regen's store.

    Saving is the engine's job (every step's result is checkpointed before the next step
    starts); expiry is retention's (:meth:`Engine.gc`); :meth:`clear_checkpoint` forgets a
    failed task's checkpoints at once. ``task_id`` is the business key
    (``task_publish_YYYYMMDD``).
    """

    def __init__(self, engine: Engine, flow: str = "paper_pipeline") -> None:
        self.engine = engine
        self.flow = flow

    async def _detail(self, task_id: str) -> RunDetail:
        run = await self.engine.find_run(self.flow, task_id)
        # A run without a task id (``regen run`` without ``--key``) is named by its run id.
        return await self.engine.detail(task_id if run is None else run.id)

    async def load_checkpoint(self, task_id: str) -> dict[str, Any]:
        """The task's checkpoint: ``papers_data``, ``analyzed_results``, ``step_outputs``."""
        checkpoint: dict[str, Any] = task_record(await self._detail(task_id))["checkpoint"]
        return checkpoint

    async def get_resumable_step(self, task_id: str) -> str | None:
        """The step a retry would start from, or ``None`` when the task is not resumable."""
        detail = await self._detail(task_id)
        if not detail.resumable:
            return None
        return detail.failed_step or next(
            (s.name for s in detail.steps if s.status is not StepStatus.SUCCEEDED), None
        )

    async def clear_checkpoint(self, task_id: str) -> bool:
        """Forget a failed task's checkpoints: the next time it runs (the day's ``run``, or
        ``regen worker``), every step runs again from ``fetch_papers``, ``publish_mcp``
        included. A task whose checkpoints retention already removed is forgotten whole
        (``True``): nothing of it can run again, and the day's next ``run`` is a new task.
        Refused (:class:`ClearRefused`) while the task is queued or running, and for a
        task that succeeded (nothing to resume; its checkpoints stay for ``show`` until
        retention removes them)."""
        detail = await self._detail(task_id)
        run = detail.run
        if run.checkpoints_expired and run.status.finished and run.retry_at is None:
            await self.engine.delete(run.id)
            return True
        if run.status is RunStatus.SUCCEEDED:
            raise ClearRefused(
                f"{task_id} succeeded: there is nothing to resume, and its checkpoints stay "
                "for `show` until CHECKPOINT_RETENTION_HOURS removes them"
            )
        if not run.status.finished:
            raise ClearRefused(
                f"{task_id} is {run.status}: clear its checkpoints once it has ended"
            )
        await self.engine.retry(run.id, from_step=detail.steps[0].name)
        return False
