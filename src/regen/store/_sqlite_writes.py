"""Applying a run's writes inside a commit: the hot path of every checkpoint.

Each write becomes one statement with positional parameters, keyed by the run's number
(``runs.key``), prepared once per connection (``sqlite3`` caches statements by text).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from regen.store import _queries
from regen.store._records import (
    AddEvent,
    CountAttempt,
    EndItem,
    EndRun,
    EndStep,
    LinkArtifact,
    PutCache,
    StartItem,
    StartStep,
    StepStatus,
)
from regen.store._sqlite_rows import dumps

Q = _queries.queries("sqlite")
#: What writes execute on: the store's commit cursor, or a connection (other transactions).
Executor = sqlite3.Connection | sqlite3.Cursor
_STEP_EVENT = Q["step_event"]
_STEP_EVENT_GUARDED = Q["step_event_guarded"]
_APPEND_EVENT = Q["append_event"]
_ITEM_START = Q["item_start"]
_ITEM_END = Q["item_end"]
_END_TYPE = {status.value: f"step.{status.value}" for status in StepStatus}


class Cursor:
    """Where a batch's writes append: the run (id and number) and its last event seq."""

    __slots__ = ("ended", "key", "run_id", "seq")

    def __init__(self, run_id: str, key: int, seq: int) -> None:
        self.run_id = run_id
        self.key = key
        self.seq = seq
        self.ended = False


def last_seq(conn: Executor, key: int) -> int:
    """The run's last event seq (a row standing for two events counts for its second)."""
    row = conn.execute(Q["last_seq"], (key,)).fetchone()
    return 0 if row is None else int(row[0])


def project(conn: Executor, key: int) -> None:
    """Bring the steps table up to date with the run's step events: the last transition
    of each step decides its state, written with one statement per step."""
    base = conn if isinstance(conn, sqlite3.Connection) else conn.connection
    cursor = base.cursor()
    cursor.row_factory = None  # plain tuples: unpacked below
    cursor.execute(Q["materialize_steps"], (key,))
    rows = cursor.execute(Q["unprojected"], (key,)).fetchall()
    if not rows:
        return
    # Per position: [status, started_at, finished_at, error, output_seq, checkpointed_at,
    # succeeded] (None: keep the table's value, for started_at and the checkpoint).
    patches: dict[int, list[Any]] = {}
    for seq, at, position, state, has_output, error, started in rows:
        if state == "running":
            _start(patches, position, at)
            continue
        patch = patches.setdefault(position, [None] * 7)
        patch[0], patch[2], patch[3] = state, at, error
        if has_output:
            patch[4], patch[5] = seq, at
        if state in ("succeeded", "partial"):
            patch[6] = 1
        if started is not None:
            _start(patches, started, at)
    conn.executemany(
        Q["project_step"], [(key, position, *patch) for position, patch in patches.items()]
    )
    conn.execute(Q["mark_projected"], (key,))


def _start(patches: dict[int, list[Any]], position: int, at: float) -> None:
    patch = patches.setdefault(position, [None] * 7)
    patch[0], patch[1], patch[2], patch[3] = "running", at, None, None


def _add_event(conn: Executor, cur: Cursor, w: AddEvent) -> None:
    cur.seq += 1
    conn.execute(_APPEND_EVENT, (cur.key << 32 | cur.seq, w.at, w.type, w.data))


def _start_step(conn: Executor, cur: Cursor, w: StartStep) -> None:
    cur.seq += 1
    conn.execute(
        _STEP_EVENT,
        (
            cur.key << 32 | cur.seq,
            w.at,
            "step.started",
            w.data,
            w.position,
            "running",
            None,
            None,
            None,
        ),
    )
    if not w.lazy:
        project(conn, cur.key)


def _end_step(conn: Executor, cur: Cursor, w: EndStep) -> None:
    seq = cur.seq + 1
    started = w.next
    cur.seq = seq if started is None else seq + 1
    state = w.status._value_
    conn.execute(
        _STEP_EVENT,
        (
            cur.key << 32 | seq,
            w.at,
            _END_TYPE[state],
            w.data,
            w.position,
            state,
            w.output,
            w.error,
            started,
        ),
    )
    if not w.lazy:
        project(conn, cur.key)


def end_step_alone(conn: Executor, key: int, seq: int, w: EndStep, token: str) -> int:
    """Commit a lazy step transition on its own, after event ``seq`` of run ``key``, guarded
    by the lease (autocommit: the statement is the transaction). Returns the run's last
    seq then, or 0 if nothing was written (the lease is lost, or a cancellation is
    pending): the caller takes the general path, which tells which."""
    seq += 1
    started = w.next
    state = w.status._value_
    if (
        conn.execute(
            _STEP_EVENT_GUARDED,
            (
                key << 32 | seq,
                w.at,
                _END_TYPE[state],
                w.data,
                w.position,
                state,
                w.output,
                w.error,
                started,
                key,
                token,
            ),
        ).rowcount
        != 1
    ):
        return 0
    return seq if started is None else seq + 1


def _count_attempt(conn: Executor, cur: Cursor, w: CountAttempt) -> None:
    conn.execute(Q["materialize_steps"], (cur.key,))
    conn.execute(Q["step_attempts"], (w.attempts, cur.key, w.position))


def _start_item(conn: Executor, cur: Cursor, w: StartItem) -> None:
    conn.execute(_ITEM_START, (cur.key, w.step, w.idx, w.key, w.input, w.at))


def _end_item(conn: Executor, cur: Cursor, w: EndItem) -> None:
    conn.execute(
        _ITEM_END,
        (
            cur.key,
            w.step,
            w.idx,
            w.key,
            w.status._value_,
            w.input,
            w.output,
            w.attempts,
            w.errors,
            int(w.cached),
            w.at,
        ),
    )


def _put_cache(conn: Executor, cur: Cursor, w: PutCache) -> None:
    conn.execute(
        Q["cache_put"],
        {"key": w.key, "step": w.step, "value": w.value, "at": w.at, "expires_at": w.expires_at},
    )


def _link_artifact(conn: Executor, cur: Cursor, w: LinkArtifact) -> None:
    conn.execute(Q["artifact_ref"], (w.sha256, cur.key, w.step, w.idx))


def end_run(conn: Executor, cur: Cursor, w: EndRun) -> None:
    """End the run's execution (also used outside a lease: cancelling a queued run)."""
    cur.ended = True
    closing: list[tuple[str, str]] = []
    if w.close_steps:  # the steps' states are changed below: bring the table up to date
        project(conn, cur.key)
        closing = conn.execute(Q["open_steps"], (cur.key,)).fetchall()
    conn.execute(
        Q["finish_run"],
        {
            "run": cur.key,
            "status": str(w.status),
            "error": w.error,
            "at": w.at,
            "retry_at": w.retry_at,
        },
    )
    if w.close_steps:
        conn.execute(Q["fail_running_steps"], {"run": cur.key, "at": w.at, "error": w.error})
        conn.execute(Q["skip_pending_steps"], {"run": cur.key})
        _closed_step_events(conn, cur, w, closing)


def _closed_step_events(
    conn: Executor, cur: Cursor, w: EndRun, closing: list[tuple[str, str]]
) -> None:
    """The log's record of the steps a cancellation closed: ``step.failed`` for a step it
    stopped (with the run's error), ``step.skipped`` for each one that never ran. Plain
    events: the steps table already holds these states."""
    error = None if w.error is None else json.loads(w.error)
    for name, status in closing:
        cur.seq += 1
        data: dict[str, Any] = {"step": name}
        if status == "running":
            type_ = "step.failed"
            if error is not None:
                data["error"] = error
        else:
            type_ = "step.skipped"
        conn.execute(_APPEND_EVENT, (cur.key << 32 | cur.seq, w.at, type_, dumps(data)))


#: The statement(s) each kind of write becomes.
APPLY: dict[type, Callable[[Executor, Cursor, Any], None]] = {
    AddEvent: _add_event,
    StartStep: _start_step,
    EndStep: _end_step,
    CountAttempt: _count_attempt,
    StartItem: _start_item,
    EndItem: _end_item,
    PutCache: _put_cache,
    LinkArtifact: _link_artifact,
    EndRun: end_run,
}
