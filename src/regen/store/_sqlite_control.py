"""Transactions of the SQLite store outside a lease: retries, cancellation, clean-up."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from regen.store import _queries
from regen.store._errors import InvalidTransition, RunNotFound
from regen.store._records import EndRun, Run, RunStatus
from regen.store._sqlite_rows import dumps
from regen.store._sqlite_rows import run as _run
from regen.store._sqlite_rows import step as _step
from regen.store._sqlite_writes import Cursor, end_run, last_seq, project
from regen.store._transitions import check_retry, retry_start

Q = _queries.queries("sqlite")


def add_event(
    conn: sqlite3.Connection, key: int, type_: str, data: dict[str, Any], at: float
) -> None:
    """Append an event to a run no lease holder writes to (numbered after the last)."""
    conn.execute(Q["insert_event"], {"run": key, "at": at, "type": type_, "data": dumps(data)})


def locked_run(conn: sqlite3.Connection, run_id: str) -> tuple[Run, int]:
    """The run and its number, read inside a write transaction (:class:`RunNotFound`)."""
    row = conn.execute(Q["get_run"], {"id": run_id}).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    return _run(row), int(row[20])


def retry_run(
    conn: sqlite3.Connection, run_id: str, now: float, *, from_step: str | None, auto: bool
) -> Run:
    """Queue a finished run again (see :meth:`Store.retry_run`), in the open transaction."""
    run, key = locked_run(conn, run_id)
    check_retry(run, now, from_step=from_step, auto=auto)
    project(conn, key)
    steps = [_step(r) for r in conn.execute(Q["get_steps"], (run_id, key))]
    start = retry_start(run, steps, from_step)
    args = {"run": key, "position": start.position}
    if from_step is not None:
        conn.execute(Q["delete_items_from"], args)
        conn.execute(Q["invalidate_steps"], {**args, "named": start.position})
    else:
        if start.kind == "map":
            conn.execute(Q["reopen_items"], {"run": key, "step": start.name})
        conn.execute(Q["reopen_step"], args)
        later = {"run": key, "position": start.position + 1}
        conn.execute(Q["delete_items_from"], later)
        conn.execute(Q["invalidate_steps"], {**later, "named": -1})
    conn.execute(Q["requeue_run"], {"run": key, "now": now})
    add_event(
        conn,
        key,
        "run.queued",
        {"retry": run.retry_count + 1, "from_step": start.name, "auto": auto},
        now,
    )
    return _run(conn.execute(Q["get_run"], {"id": run_id}).fetchone())


def request_cancel(conn: sqlite3.Connection, run_id: str, now: float) -> Run:
    """Cancel a queued (or retry-waiting) run; flag a running one. In the open transaction."""
    run, key = locked_run(conn, run_id)
    waiting = run.status is RunStatus.FAILED and run.retry_at is not None
    if run.status is RunStatus.QUEUED or waiting:
        cursor = Cursor(run_id, key, last_seq(conn, key))  # the closed steps' events follow
        end_run(conn, cursor, EndRun(RunStatus.CANCELLED, now, close_steps=True))
        add_event(conn, key, "run.cancelled", {"requested": True}, now)
    elif run.status is RunStatus.RUNNING:
        # Only the flag: while the lease holds, its holder alone appends events.
        conn.execute(Q["request_cancel"], {"run": key, "now": now})
    else:
        raise InvalidTransition(
            run_id,
            run.status,
            f"run {run_id} has already finished ({run.status}): there is nothing to cancel",
        )
    return _run(conn.execute(Q["get_run"], {"id": run_id}).fetchone())


def expire(
    conn: sqlite3.Connection, *, checkpoints_before: float, runs_before: float, now: float
) -> tuple[int, int, int]:
    """Expire old checkpoints, delete old runs and stale cache entries (the first part of
    :meth:`Store.collect`): ``(checkpoints expired, runs deleted, cache entries purged)``."""
    args = {"before": checkpoints_before}
    for (key,) in conn.execute(Q["expiring_runs"], args).fetchall():
        conn.execute(Q["expire_step_outputs"], (key,))
    conn.execute(Q["expire_items"], args)
    expired = conn.execute(Q["expire_runs"], args).rowcount
    deleted = 0
    for (key,) in conn.execute(Q["old_runs"], {"before": runs_before}).fetchall():
        conn.execute(Q["delete_events"], (key,))  # the log has no cascade: its id range
        deleted += conn.execute(Q["delete_run"], (key,)).rowcount
    purged = conn.execute(Q["purge_cache"], {"now": now}).rowcount
    return expired, deleted, purged


def delete_artifacts(
    conn: sqlite3.Connection, shas: list[str], remove_file: Callable[[str], None]
) -> int:
    """Delete the artifacts still unreferenced, and their files (in the open transaction,
    so no put can interleave); how many were deleted."""
    removed = 0
    for sha in shas:
        if conn.execute(Q["delete_artifact"], {"sha256": sha}).rowcount:
            remove_file(sha)
            removed += 1
    return removed
