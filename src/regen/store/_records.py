"""What the store persists: runs, steps, items, events, artifacts; and the writes a run makes.

Reads return these frozen records with JSON columns already decoded. Writes carry JSON
as text the engine has encoded (the store never guesses how to encode a user's value).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple


class RunStatus(enum.StrEnum):
    """``queued → running → succeeded | partial | failed | cancelled``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the run has ended (it may still be retried)."""
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


class StepStatus(enum.StrEnum):
    """``pending → running → succeeded | partial | failed | skipped`` (partial: map steps)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    SKIPPED = "skipped"


class ItemStatus(enum.StrEnum):
    """``pending → running → succeeded | given_up | skipped`` (skipped: the quota was met)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    GIVEN_UP = "given_up"
    SKIPPED = "skipped"


# --- what is read -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a flow. Times are seconds since the epoch."""

    id: str
    flow: str
    flow_ref: str | None
    business_key: str | None
    params: dict[str, Any]
    status: RunStatus
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    cancel_requested: bool
    retry_count: int
    auto_retries: int
    max_retries: int
    retry_delay: float
    retry_at: float | None
    executions: int
    crashes: int
    error: dict[str, Any] | None
    checkpoints_expired: bool

    def lease_expired(self, now: float) -> bool:
        """Whether the run is ``running`` but its process stopped renewing its lease."""
        return (
            self.status is RunStatus.RUNNING
            and self.lease_expires_at is not None
            and self.lease_expires_at < now
        )


@dataclass(frozen=True, slots=True)
class Step:
    """A step of a run and its checkpoint (``output``, decoded; ``None`` when none)."""

    run_id: str
    position: int
    name: str
    kind: str
    status: StepStatus
    output: Any
    error: dict[str, Any] | None
    attempts: int
    generation: int
    refresh: bool
    started_at: float | None
    finished_at: float | None
    checkpointed_at: float | None
    #: A map step's quota and item count, once its items are all recorded (claimable).
    quota: int | None = None
    items_total: int | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One item of a map step: its input, output, the attempts that failed, the worker
    that runs (or ran) it, and the provider that served its last call (when it succeeded
    through regen's adapters; a fallback's name while the first provider was down)."""

    run_id: str
    step: str
    idx: int
    key: str | None
    status: ItemStatus
    input: Any
    output: Any
    attempts: list[dict[str, Any]]
    errors: list[str]
    cached: bool
    started_at: float | None
    finished_at: float | None
    worker: str | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a run's event log; ``seq`` counts from 1 per run; ``cursor`` orders
    the events of every run in the database (a reader following all runs resumes after
    the last cursor it saw)."""

    run_id: str
    seq: int
    at: float
    type: str
    data: dict[str, Any]
    cursor: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "at": self.at,
            "type": self.type,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class Artifact:
    """Metadata of a stored binary output; the bytes live in a file named by ``sha256``."""

    sha256: str
    size: int
    content_type: str
    width: int | None = None
    height: int | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this process runs a run: every write names it and the store checks it."""

    run_id: str
    token: str
    owner: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ItemLease:
    """Proof that this process runs items of a map step: the items it claimed carry
    ``token`` (each claim's own), and the store checks an item's token on its end, in the
    transaction that writes it, so a worker whose item was taken over can no longer record
    a result for it."""

    run_id: str
    step: str
    token: str
    owner: str


@dataclass(frozen=True, slots=True)
class ClaimedItems:
    """Items just claimed (in order, inputs decoded), with the run and step they belong to."""

    run: Run
    step: Step
    lease: ItemLease
    items: list[Item]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A run just claimed: the run as it was, the lease, and whether it was taken over."""

    run: Run
    lease: Lease
    taken_over: bool


@dataclass(frozen=True, slots=True)
class NewRun:
    """What it takes to create a run (its steps are declared with it)."""

    id: str
    flow: str
    flow_ref: str | None
    business_key: str | None
    params: str
    steps: tuple[tuple[str, str], ...]  # (name, kind) in order
    max_retries: int = 0
    retry_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Commit:
    """The outcome of a commit: whether the lease held, and whether cancel was asked."""

    ok: bool
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class GcCounts:
    """What a clean-up removed."""

    checkpoints_expired: int = 0
    runs_deleted: int = 0
    artifacts_deleted: int = 0
    cache_deleted: int = 0
    health_checks_deleted: int = 0
    counts_deleted: int = 0


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One check of a provider's health: ``status`` is ``healthy`` or ``unhealthy``;
    ``error`` is short (``401``, ``timeout``, ``rate limited``); ``quota_remaining`` a
    percentage when the provider reports it."""

    provider: str
    at: float
    status: str
    latency_ms: float | None = None
    error: str | None = None
    quota_remaining: float | None = None


@dataclass(frozen=True, slots=True)
class Count:
    """``n`` more of the counter ``name`` (``attempts``, ``retries``...) of ``provider`` and
    failure ``kind`` (``""`` when not per kind), in the one-minute bucket starting at
    ``bucket`` (seconds since the epoch)."""

    bucket: float
    provider: str
    kind: str
    name: str
    n: int


# --- what a run writes (applied in order, in one transaction, under its lease) ------------


class AddEvent(NamedTuple):
    """Append an event (``data`` is JSON text); its sequence number is given at commit."""

    type: str
    data: str
    at: float


class StartStep(NamedTuple):
    """Mark a step running and append its ``step.started`` event with ``data`` (JSON)."""

    position: int
    at: float
    data: str = "{}"


class EndStep(NamedTuple):
    """Record a step's end and append its ``step.<status>`` event with ``data`` (JSON);
    a non-``None`` ``output`` is its checkpoint, kept in the step's row."""

    position: int
    status: StepStatus
    at: float
    output: str | None = None
    error: str | None = None
    data: str = "{}"


class CountAttempt(NamedTuple):
    """Record how many attempts a step (a stream) has begun."""

    position: int
    attempts: int


class StartItem(NamedTuple):
    """Mark a map item running (its row is created on first start), outside any claim."""

    step: str
    idx: int
    at: float
    key: str | None = None
    input: str | None = None


class EndItem(NamedTuple):
    """Record a map item's end: its output, or the attempts and errors it gave up with.

    With ``token`` (the claim's), it is recorded only while the item still runs under that
    claim (nothing is written otherwise), and a success the step's quota no longer needs
    is recorded as ``skipped``, its output discarded. ``event``: the data (JSON) of the
    ``item.<status>`` event appended with it when it is recorded. ``provider``: the one
    that served a success.
    """

    step: str
    idx: int
    status: ItemStatus
    at: float
    key: str | None = None
    input: str | None = None
    output: str | None = None
    attempts: str | None = None
    errors: str | None = None
    cached: bool = False
    token: str | None = None
    event: str | None = None
    provider: str | None = None


class AddItems(NamedTuple):
    """Record a map step's items as ``pending``: ``(idx, key, input JSON)`` each; items
    already recorded (by an earlier execution) are kept as they are."""

    step: str
    rows: tuple[tuple[int, str | None, str], ...]


class OpenItems(NamedTuple):
    """Every item of the map step at ``position`` is recorded: any worker may now claim
    them, at most ``quota`` succeeding (``None``: no quota)."""

    position: int
    quota: int | None
    total: int


class SkipItems(NamedTuple):
    """The quota is met: the step's items not ended (pending, or left running by a worker
    that died) become ``skipped``."""

    step: str
    at: float


class PutCache(NamedTuple):
    """Remember a result for identical inputs (until ``expires_at``, if given)."""

    key: str
    step: str
    value: str
    at: float
    expires_at: float | None = None


class LinkArtifact(NamedTuple):
    """Note that the run uses an artifact, so clean-up keeps it while the run exists."""

    sha256: str
    step: str
    idx: int = -1


class EndRun(NamedTuple):
    """End the run's execution with a status; releases the lease.

    When ``close_steps`` (a cancelled run), pending steps become ``skipped`` and running
    ones ``failed``, each with its ``step.skipped`` / ``step.failed`` event appended
    before the writes that follow. ``retry_at`` schedules an automatic retry.
    """

    status: RunStatus
    at: float
    error: str | None = None
    retry_at: float | None = None
    close_steps: bool = False


Write = (
    AddEvent
    | StartStep
    | EndStep
    | CountAttempt
    | StartItem
    | EndItem
    | AddItems
    | OpenItems
    | SkipItems
    | PutCache
    | LinkArtifact
    | EndRun
)
