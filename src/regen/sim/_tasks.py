"""Submit-and-poll tasks (DashScope images, photos, videos) moving through simulated time.

A task is ``PENDING`` for the first quarter of its duration, ``RUNNING`` until it ends,
then ``SUCCEEDED`` (or ``FAILED`` when a fault says so). ``task_stuck`` holds it in
``RUNNING`` (or ``PENDING``) forever; ``task_unknown`` makes it unknown.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regen.sim._faults import FaultSpec

if TYPE_CHECKING:
    from regen.sim._http import Ctx

PENDING, RUNNING, SUCCEEDED, FAILED, UNKNOWN = (
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "UNKNOWN",
)


@dataclass(slots=True)
class Task:
    """One task and the faults it carries."""

    id: str
    kind: str
    prompt: str
    model: str
    width: int
    height: int
    n: int
    duration: float
    created: float = field(default_factory=time.monotonic)
    submitted_at: float = field(default_factory=time.time)
    stuck: str | None = None
    failed: str | None = None
    unknown: bool = False
    partial: int = 0
    poll_limited: int = 0
    image_faults: tuple[FaultSpec, ...] = ()
    polls: int = 0
    reported: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def status(self, now: float | None = None) -> str:
        if self.unknown:
            return UNKNOWN
        elapsed = (time.monotonic() if now is None else now) - self.created
        if self.stuck == PENDING or elapsed < self.duration / 4:
            return PENDING
        if self.stuck is not None or elapsed < self.duration:
            return RUNNING
        return FAILED if self.failed else SUCCEEDED

    def progress(self) -> int:
        status = self.status()
        if status in (SUCCEEDED, FAILED):
            return 100
        elapsed = time.monotonic() - self.created
        cap = 95 if self.stuck else 99
        return min(cap, int(100 * elapsed / self.duration) if self.duration else 99)

    def bind(self, spec: FaultSpec) -> None:
        """Attach a task fault (given at submit, or on a poll) to this task."""
        if spec.name == "task_stuck":
            self.stuck = PENDING if (spec.arg or "").upper() == PENDING else RUNNING
        elif spec.name == "task_failed":
            self.failed = spec.arg or "InternalError"
        elif spec.name == "task_unknown":
            self.unknown = True
        elif spec.name == "partial_results":
            self.partial = max(1, int(spec.number(max(1, self.n // 2))))
        elif spec.name == "poll_rate_limit":
            self.poll_limited += max(1, int(spec.number(1)))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "prompt": self.prompt,
            "model": self.model,
            "status": self.status(),
            "polls": self.polls,
            "n": self.n,
            "size": f"{self.width}x{self.height}",
            "faults": [
                name
                for name, on in (
                    ("task_stuck", self.stuck is not None),
                    ("task_failed", self.failed is not None),
                    ("task_unknown", self.unknown),
                    ("partial_results", self.partial > 0),
                )
                if on
            ]
            + [str(spec) for spec in self.image_faults],
        }


class TaskBoard:
    """All tasks by id; ids are drawn from the seed, so a rerun gives the same ids."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self.tasks: dict[str, Task] = {}
        self._rng = random.Random(seed)

    def reset(self) -> None:
        self.tasks.clear()
        self._rng = random.Random(self._seed)

    def new_id(self, kind: str) -> str:
        value = uuid.UUID(int=self._rng.getrandbits(128), version=4)
        return str(value) if kind == "dashscope" else f"{kind}-{value.hex[:20]}"

    def add(self, task: Task) -> Task:
        self.tasks[task.id] = task
        return task

    def get(self, task_id: str) -> Task | None:
        return self.tasks.get(task_id)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {task_id: task.describe() for task_id, task in self.tasks.items()}


_SUBMIT_FAULTS = ("task_stuck", "task_failed", "task_unknown", "partial_results")
THROTTLE = "THROTTLE"


def bind_submit_faults(ctx: Ctx, task: Task) -> None:
    """Attach the submit request's task faults, and the faults it carries, to ``task``."""
    for name in _SUBMIT_FAULTS:
        spec = ctx.fault(name)
        if spec is not None:
            task.bind(spec)
    for spec in ctx.plan.carried:
        ctx.state.stats.fault(ctx.route, ctx.prompt, spec.name)
        ctx.record(spec.name)
        if spec.name == "poll_rate_limit":
            task.bind(spec)
        else:
            task.image_faults += (spec,)


def poll_override(ctx: Ctx, task: Task) -> str | None:
    """Count a poll and apply its faults: ``THROTTLE``, a status to report, or ``None``."""
    task.polls += 1
    if ctx.fault("poll_rate_limit") is not None:
        return THROTTLE
    if task.poll_limited > 0:
        task.poll_limited -= 1
        ctx.state.stats.fault(ctx.route, ctx.prompt, "poll_rate_limit")
        ctx.record("poll_rate_limit")
        return THROTTLE
    if ctx.fault("task_unknown") is not None:
        return UNKNOWN
    if ctx.fault("task_stuck") is not None:
        return RUNNING
    for name in ("task_failed", "partial_results"):
        spec = ctx.fault(name)
        if spec is not None:
            task.bind(spec)
            if name == "task_failed":
                task.stuck, task.duration = None, 0.0
    return None


def identify_poll(ctx: Ctx) -> None:
    ctx.ident.task_id = ctx.param
    task = ctx.state.tasks.get(ctx.param)
    if task is not None:
        ctx.ident.origin_prompt = task.prompt
