"""The request and response bodies of the REST API (their JSON Schemas are in /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StartRun(BaseModel):
    """``POST /api/runs``: a run of a served flow."""

    model_config = ConfigDict(extra="forbid")

    flow: str = Field(min_length=1, max_length=200, description="A served flow's name.")
    params: dict[str, Any] = Field(default_factory=dict, description="The flow's params.")
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        pattern=r"^[^\x00]*$",
        description="A business key: one run per key, whatever the concurrency (text "
        "without NUL characters).",
    )
    on_failed: Literal["retry", "refuse", "return"] = Field(
        default="retry",
        description="When the key's run exists and failed: retry it, refuse (409), or "
        "return it as it is.",
    )


class Login(BaseModel):
    """``POST /login``: the server's token, exchanged for a cookie."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=1000)


class RunOut(BaseModel):
    """A run as the API shows it."""

    id: str
    flow: str
    flow_ref: str | None
    business_key: str | None
    params: dict[str, Any]
    status: str
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


class StartedOut(BaseModel):
    """What ``POST /api/runs`` did: the run, whether it was created or retried."""

    run: RunOut
    created: bool
    retried: bool


class RunPage(BaseModel):
    """A page of runs, newest first; ``next_before`` pages on (``?before=``)."""

    runs: list[RunOut]
    next_before: float | None


class ItemOut(BaseModel):
    """One item of a map step."""

    run_id: str
    step: str
    idx: int
    key: str | None
    status: str
    input: Any
    output: Any
    attempts: list[dict[str, Any]]
    errors: list[str]
    cached: bool
    started_at: float | None
    finished_at: float | None
    worker: str | None = Field(
        None, description="The worker process that runs (or ran) the item (``regen worker``)."
    )
    provider: str | None = Field(
        None,
        description="The provider that served its last call (a fallback's name while the "
        "first provider was down).",
    )


class ItemPage(BaseModel):
    """A page of a map step's items; ``next_after`` pages on (``?after=``)."""

    step: str
    items: list[ItemOut]
    next_after: int | None


class RetryOut(BaseModel):
    """A retry queued: the run, the steps it will run again, and those with an outside
    effect among them (``warning`` says so in words)."""

    run: RunOut
    from_step: str | None
    reruns: list[str]
    side_effects: list[str]
    warning: str | None


class CheckpointOut(BaseModel):
    """A run's checkpoint: each succeeded step's output (the paper pipeline's fields)."""

    run_id: str
    status: str
    resumable: bool
    last_successful_step: str | None
    failed_step: str | None
    step_outputs: dict[str, Any]


class Problem(BaseModel):
    """An error: what went wrong and what to do about it."""

    detail: str
