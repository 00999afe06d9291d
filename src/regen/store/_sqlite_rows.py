"""Rows as records: read by column name, JSON columns decoded (SQLite's rows, and the
PostgreSQL store's, whose columns are the same)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from regen.store._records import (
    Artifact,
    Event,
    HealthCheck,
    Item,
    ItemStatus,
    Run,
    RunStatus,
    Step,
    StepStatus,
)


class Row(Protocol):
    """A row readable by column name (``sqlite3.Row``, or a dict from psycopg)."""

    def __getitem__(self, key: str, /) -> Any: ...


def loads(text: str | None) -> Any:
    """A JSON column's value (``None`` stays ``None``)."""
    return None if text is None else json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON text for a column or a query parameter."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def run(row: Row) -> Run:
    """A row of ``runs``."""
    return Run(
        id=row["id"],
        flow=row["flow"],
        flow_ref=row["flow_ref"],
        business_key=row["business_key"],
        params=json.loads(row["params"]),
        status=RunStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        cancel_requested=bool(row["cancel_requested"]),
        retry_count=row["retry_count"],
        auto_retries=row["auto_retries"],
        max_retries=row["max_retries"],
        retry_delay=row["retry_delay"],
        retry_at=row["retry_at"],
        executions=row["executions"],
        crashes=row["crashes"],
        error=loads(row["error"]),
        checkpoints_expired=bool(row["checkpoints_expired"]),
    )


def step(run_id: str, row: Row) -> Step:
    """A row of ``steps``."""
    return Step(
        run_id=run_id,
        position=row["position"],
        name=row["name"],
        kind=row["kind"],
        status=StepStatus(row["status"]),
        output=loads(row["output"]),
        error=loads(row["error"]),
        attempts=row["attempts"],
        generation=row["generation"],
        refresh=bool(row["refresh"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        checkpointed_at=row["checkpointed_at"],
        quota=row["quota"],
        items_total=row["items_total"],
    )


def item(run_id: str, row: Row) -> Item:
    """A row of ``items``."""
    return Item(
        run_id=run_id,
        step=row["step"],
        idx=row["idx"],
        key=row["key"],
        status=ItemStatus(row["status"]),
        input=loads(row["input"]),
        output=loads(row["output"]),
        attempts=loads(row["attempts"]) or [],
        errors=loads(row["errors"]) or [],
        cached=bool(row["cached"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        worker=row["worker"],
        provider=row["provider"],
    )


def event(run_id: str, row: Row) -> Event:
    """A row of ``events``."""
    return Event(run_id, row["seq"], row["at"], row["type"], json.loads(row["data"]), row["id"])


def artifact(row: Row) -> Artifact:
    """A row of ``artifacts``."""
    return Artifact(
        sha256=row["sha256"],
        size=row["size"],
        content_type=row["content_type"],
        width=row["width"],
        height=row["height"],
        created_at=row["created_at"],
    )


def health_check(row: Row) -> HealthCheck:
    """A row of ``health_checks``."""
    return HealthCheck(
        provider=row["provider"],
        at=row["at"],
        status=row["status"],
        latency_ms=row["latency_ms"],
        error=row["error"],
        quota_remaining=row["quota_remaining"],
    )
