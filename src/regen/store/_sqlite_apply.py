"""How a run's writes are applied to SQLite, inside the transaction that commits them.

Each kind of :class:`~regen.store._records.Write` has its function here (as PostgreSQL's
``regen_apply`` has its branch): a state change is written to the row where it lives and,
with it, its event, appended to the run's log with the next sequence number.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from regen.store import _queries
from regen.store._event_types import EventType
from regen.store._records import (
    AddEvent,
    AddItems,
    CountAttempt,
    EndItem,
    EndRun,
    EndStep,
    ItemStatus,
    LinkArtifact,
    OpenItems,
    PutCache,
    SkipItems,
    StartItem,
    StartStep,
    Write,
)
from regen.store._sqlite_rows import dumps, loads

Q = _queries.queries("sqlite")


class RunLog:
    """A run being written to in this transaction: its number, its last event's seq, and
    per map step the quota and successes counted so far (for item ends under a claim)."""

    __slots__ = ("key", "quotas", "seq")

    def __init__(self, key: int, seq: int) -> None:
        self.key = key
        self.seq = seq
        self.quotas: dict[str, list[int]] = {}

    def append(self, conn: sqlite3.Connection, type_: str, data: str, at: float) -> None:
        """Append an event (``data``: JSON text) numbered after the last."""
        self.seq += 1
        conn.execute(
            Q["insert_event"],
            {"run": self.key, "seq": self.seq, "at": at, "type": type_, "data": data},
        )


def apply(conn: sqlite3.Connection, log: RunLog, writes: Sequence[Write]) -> None:
    """Apply ``writes`` to the run of ``log``, in order."""
    for write in writes:
        _APPLY[type(write)](conn, log, write)


def _add_event(conn: sqlite3.Connection, log: RunLog, w: AddEvent) -> None:
    log.append(conn, w.type, w.data, w.at)


def _start_step(conn: sqlite3.Connection, log: RunLog, w: StartStep) -> None:
    conn.execute(Q["start_step"], {"run": log.key, "position": w.position, "at": w.at})
    log.append(conn, EventType.STEP_STARTED, w.data, w.at)


def _end_step(conn: sqlite3.Connection, log: RunLog, w: EndStep) -> None:
    conn.execute(
        Q["end_step"],
        {
            "run": log.key,
            "position": w.position,
            "status": str(w.status),
            "at": w.at,
            "error": w.error,
            "output": w.output,
        },
    )
    log.append(conn, EventType.step_ended(w.status), w.data, w.at)


def _count_attempt(conn: sqlite3.Connection, log: RunLog, w: CountAttempt) -> None:
    conn.execute(
        Q["step_attempts"], {"run": log.key, "position": w.position, "attempts": w.attempts}
    )


def _start_item(conn: sqlite3.Connection, log: RunLog, w: StartItem) -> None:
    conn.execute(
        Q["item_start"],
        {"run": log.key, "step": w.step, "idx": w.idx, "key": w.key, "input": w.input, "at": w.at},
    )


def _end_item(conn: sqlite3.Connection, log: RunLog, w: EndItem) -> None:
    if w.token is not None:
        _finish_item(conn, log, w)
        return
    conn.execute(
        Q["item_end"],
        {
            "run": log.key,
            "step": w.step,
            "idx": w.idx,
            "key": w.key,
            "status": str(w.status),
            "input": w.input,
            "output": w.output,
            "attempts": w.attempts,
            "errors": w.errors,
            "cached": int(w.cached),
            "at": w.at,
            "provider": w.provider,
        },
    )


def _finish_item(conn: sqlite3.Connection, log: RunLog, w: EndItem) -> None:
    """An item's end under its claim: fenced by the token, held to the step's quota."""
    status, output, data = w.status, w.output, w.event
    args = {"run": log.key, "step": w.step}
    if status is ItemStatus.SUCCEEDED:
        counted = log.quotas.get(w.step)
        if counted is None:
            quota = conn.execute(Q["step_quota"], args).fetchone()
            quota = -1 if quota is None or quota[0] is None else int(quota[0])
            done = conn.execute(Q["items_succeeded"], args).fetchone()[0] if quota >= 0 else 0
            counted = log.quotas[w.step] = [quota, done]
        if 0 <= counted[0] <= counted[1]:  # the quota is already met: not needed
            status, output = ItemStatus.SKIPPED, None
            data = dumps({"step": w.step, "item": w.idx, "key": w.key, "reason": "quota met"})
    cursor = conn.execute(
        Q["item_finish"],
        {
            **args,
            "idx": w.idx,
            "token": w.token,
            "status": str(status),
            "output": output,
            "attempts": w.attempts,
            "errors": w.errors,
            "cached": int(w.cached),
            "at": w.at,
            "provider": w.provider if status is ItemStatus.SUCCEEDED else None,
        },
    )
    if cursor.rowcount == 0:
        return  # the item was taken over (its lease expired) or has already ended
    if status is ItemStatus.SUCCEEDED and w.step in log.quotas:
        log.quotas[w.step][1] += 1
    if data is not None:
        log.append(conn, EventType.item_ended(status), data, w.at)


def _add_items(conn: sqlite3.Connection, log: RunLog, w: AddItems) -> None:
    conn.executemany(
        Q["item_add"],
        [
            {"run": log.key, "step": w.step, "idx": idx, "key": key, "input": text}
            for idx, key, text in w.rows
        ],
    )


def _open_items(conn: sqlite3.Connection, log: RunLog, w: OpenItems) -> None:
    conn.execute(
        Q["open_items"],
        {"run": log.key, "position": w.position, "quota": w.quota, "total": w.total},
    )


def _skip_items(conn: sqlite3.Connection, log: RunLog, w: SkipItems) -> None:
    conn.execute(Q["skip_pending_items"], {"run": log.key, "step": w.step, "at": w.at})


def _put_cache(conn: sqlite3.Connection, log: RunLog, w: PutCache) -> None:
    conn.execute(
        Q["cache_put"],
        {"key": w.key, "step": w.step, "value": w.value, "at": w.at, "expires_at": w.expires_at},
    )


def _link_artifact(conn: sqlite3.Connection, log: RunLog, w: LinkArtifact) -> None:
    conn.execute(
        Q["artifact_ref"], {"sha256": w.sha256, "run": log.key, "step": w.step, "idx": w.idx}
    )


def _end_run(conn: sqlite3.Connection, log: RunLog, w: EndRun) -> None:
    closing: list[sqlite3.Row] = []
    if w.close_steps:
        closing = conn.execute(Q["open_steps"], {"run": log.key}).fetchall()
    conn.execute(
        Q["finish_run"],
        {
            "run": log.key,
            "status": str(w.status),
            "error": w.error,
            "at": w.at,
            "retry_at": w.retry_at,
        },
    )
    if not w.close_steps:
        return
    conn.execute(Q["fail_running_steps"], {"run": log.key, "at": w.at, "error": w.error})
    conn.execute(Q["skip_pending_steps"], {"run": log.key})
    # The log's record of what the cancellation closed: ``step.failed`` for a step it
    # stopped (with the run's error), ``step.skipped`` for each one that never ran.
    error = loads(w.error)
    for row in closing:
        data: dict[str, Any] = {"step": row["name"]}
        if row["status"] == "running":
            if error is not None:
                data["error"] = error
            log.append(conn, EventType.STEP_FAILED, dumps(data), w.at)
        else:
            log.append(conn, EventType.STEP_SKIPPED, dumps(data), w.at)


_APPLY: dict[type, Callable[[sqlite3.Connection, RunLog, Any], None]] = {
    AddEvent: _add_event,
    StartStep: _start_step,
    EndStep: _end_step,
    CountAttempt: _count_attempt,
    StartItem: _start_item,
    EndItem: _end_item,
    AddItems: _add_items,
    OpenItems: _open_items,
    SkipItems: _skip_items,
    PutCache: _put_cache,
    LinkArtifact: _link_artifact,
    EndRun: _end_run,
}
