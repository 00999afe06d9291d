"""Which retries a run's status allows, and where a retry starts: rules any store applies."""

from __future__ import annotations

from regen.store._errors import InvalidTransition
from regen.store._records import Run, RunStatus, Step, StepStatus


def check_retry(run: Run, now: float, *, from_step: str | None, auto: bool) -> None:
    """Refuse a retry the run's status forbids (:class:`InvalidTransition`). A ``running``
    run whose lease expired (its process died) may be retried at once."""
    rid = run.id
    if run.checkpoints_expired:
        raise InvalidTransition(
            rid,
            run.status,
            f"run {rid} cannot be retried: its "
            "checkpoints were deleted by the retention clean-up; start a "
            "new run",
        )
    if auto:
        if run.status is not RunStatus.FAILED or run.retry_at is None or run.retry_at > now:
            raise InvalidTransition(
                rid,
                run.status,
                f"run {rid}: no automatic retry is due (a manual retry may have replaced it)",
            )
        return
    if run.status is RunStatus.RUNNING and not run.lease_expired(now):
        raise InvalidTransition(
            rid,
            run.status,
            f"run {rid} is running: a retry would run "
            "it twice; wait for it to end or cancel it first",
        )
    if run.status is RunStatus.QUEUED:
        raise InvalidTransition(
            rid,
            run.status,
            f"run {rid} is already queued (a retry or start is pending): refusing a second retry",
        )
    if run.status is RunStatus.CANCELLED:
        raise InvalidTransition(rid, run.status, f"run {rid} was cancelled; start a new run")
    if run.status is RunStatus.SUCCEEDED and from_step is None:
        raise InvalidTransition(
            rid,
            run.status,
            f"run {rid} succeeded: nothing failed to "
            "retry; name a step to re-run it and the steps after it",
        )


def retry_start(run: Run, steps: list[Step], from_step: str | None) -> Step:
    """The step a retry starts from: ``from_step``, else the first one not done."""
    if from_step is not None:
        for step in steps:
            if step.name == from_step:
                return step
        names = ", ".join(s.name for s in steps)
        raise InvalidTransition(
            run.id,
            run.status,
            f"run {run.id} has no step named {from_step!r}; its steps are: {names}",
        )
    for step in steps:
        if step.status in (StepStatus.FAILED, StepStatus.PARTIAL):
            return step
    for step in steps:
        if step.status is not StepStatus.SUCCEEDED:
            return step
    return steps[-1]


def check_delete(run: Run) -> None:
    """Refuse deleting a run that is not over (:class:`InvalidTransition`)."""
    if not run.status.finished or run.retry_at is not None:
        waiting = " and waits for an automatic retry" if run.retry_at is not None else ""
        raise InvalidTransition(
            run.id,
            run.status,
            f"run {run.id} is {run.status}{waiting}: cancel it first, then delete it",
        )
