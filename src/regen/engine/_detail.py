"""A run's detail as a dashboard or ``regen show`` presents it (the paper pipeline
example's task record)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from regen.store import ItemStatus, Run, RunStatus, Step, StepStatus


@dataclass(frozen=True, slots=True)
class RunDetail:
    """A run with its steps, their checkpoints, item counts, and what a retry would do.

    ``resumable``: a retry would resume from checkpoints (failed or partial, checkpoints
    kept). ``last_successful_step`` / ``failed_step``: names, or ``None``.
    ``items``: per map step, how many items are in each status.
    """

    run: Run
    steps: list[Step]
    items: dict[str, dict[str, int]]

    @property
    def resumable(self) -> bool:
        """Whether a retry would resume this run from its checkpoints."""
        return (
            self.run.status in (RunStatus.FAILED, RunStatus.PARTIAL)
            and not self.run.checkpoints_expired
        )

    @property
    def last_successful_step(self) -> str | None:
        """The last step, in order, that succeeded before the first one that did not."""
        last = None
        for step in self.steps:
            if step.status is not StepStatus.SUCCEEDED:
                break
            last = step.name
        return last

    @property
    def failed_step(self) -> str | None:
        """The first failed or partial step, if any."""
        for step in self.steps:
            if step.status in (StepStatus.FAILED, StepStatus.PARTIAL):
                return step.name
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record with ``checkpoint.step_outputs`` ({name: output, timestamp})."""
        run = asdict(self.run)
        run["status"] = str(self.run.status)
        outputs = {
            s.name: {"output": s.output, "timestamp": s.checkpointed_at}
            for s in self.steps
            if s.checkpointed_at is not None and s.output is not None
        }
        return {
            **run,
            "run_id": self.run.id,
            "resumable": self.resumable,
            "last_successful_step": self.last_successful_step,
            "failed_step": self.failed_step,
            "checkpoint": {"step_outputs": outputs},
            "steps": [
                {**asdict(s), "status": str(s.status), "items": self.items.get(s.name)}
                for s in self.steps
            ],
        }


def item_counts(counts: dict[ItemStatus, int]) -> dict[str, int]:
    """Item counts with every status present."""
    return {str(status): counts.get(status, 0) for status in ItemStatus}
