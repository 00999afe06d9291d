"""The SQLite store's transactions: each function runs inside one, on the caller's connection.

Every change of state is written to the row where it lives, with its event, in the same
transaction: a step's end updates the step's row (and its checkpoint) and appends its
``step.<status>`` event; an item's end, its row and its event.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from regen.store import _queries
from regen.store._errors import InvalidTransition, RunNotFound
from regen.store._event_types import EventType
from regen.store._records import (
    AddEvent,
    Artifact,
    Claimed,
    Commit,
    CountAttempt,
    EndItem,
    EndRun,
    EndStep,
    Lease,
    LinkArtifact,
    NewRun,
    PutCache,
    Run,
    RunStatus,
    StartItem,
    StartStep,
    Write,
)
from regen.store._sqlite_rows import dumps, loads
from regen.store._sqlite_rows import run as run_record
from regen.store._sqlite_rows import step as step_record
from regen.store._transitions import check_delete, check_retry, retry_start

Q = _queries.queries("sqlite")
_LOST = Commit(False)


class RunLog:
    """A run being written to in this transaction: its number and its last event's seq."""

    __slots__ = ("key", "seq")

    def __init__(self, key: int, seq: int) -> None:
        self.key = key
        self.seq = seq

    def append(self, conn: sqlite3.Connection, type_: str, data: str, at: float) -> None:
        """Append an event (``data``: JSON text) numbered after the last."""
        self.seq += 1
        conn.execute(
            Q["insert_event"],
            {"run": self.key, "seq": self.seq, "at": at, "type": type_, "data": data},
        )


def locked_run(conn: sqlite3.Connection, run_id: str) -> tuple[Run, RunLog]:
    """The run and its log, read inside a write transaction (:class:`RunNotFound`)."""
    row = conn.execute(Q["get_run"], {"id": run_id}).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    last = conn.execute(Q["last_seq"], {"run": row["key"]}).fetchone()[0]
    return run_record(row), RunLog(row["key"], last)


def read_run(conn: sqlite3.Connection, run_id: str) -> Run:
    row = conn.execute(Q["get_run"], {"id": run_id}).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    return run_record(row)


# --- runs -----------------------------------------------------------------------------------


def create_run(conn: sqlite3.Connection, new: NewRun, now: float) -> tuple[Run, bool]:
    cursor = conn.execute(
        Q["insert_run"],
        {
            "id": new.id,
            "flow": new.flow,
            "flow_ref": new.flow_ref,
            "business_key": new.business_key,
            "params": new.params,
            "now": now,
            "max_retries": new.max_retries,
            "retry_delay": new.retry_delay,
        },
    )
    if cursor.rowcount == 0:
        row = conn.execute(
            Q["find_run"], {"flow": new.flow, "business_key": new.business_key}
        ).fetchone()
        return run_record(row), False
    key = int(cursor.lastrowid or 0)
    conn.executemany(
        Q["insert_step"],
        [
            {"run": key, "position": position, "name": name, "kind": kind}
            for position, (name, kind) in enumerate(new.steps)
        ],
    )
    log = RunLog(key, 0)
    log.append(conn, EventType.RUN_QUEUED, dumps({"flow": new.flow}), now)
    return read_run(conn, new.id), True


def claim(
    conn: sqlite3.Connection,
    owner: str,
    ttl: float,
    now: float,
    run_id: str | None,
    flows: Sequence[str] | None,
) -> Claimed | None:
    wanted = None if flows is None else dumps(list(flows))
    # A named run is looked up by its id (the general query scans the queue).
    query = Q["claim_candidate"] if run_id is None else Q["claim_named"]
    row = conn.execute(query, {"run_id": run_id, "flows": wanted, "now": now}).fetchone()
    if row is None:
        return None
    before, log = locked_run(conn, row["id"])
    token = uuid.uuid4().hex
    conn.execute(
        Q["claim_run"],
        {"run": log.key, "owner": owner, "token": token, "expires_at": now + ttl, "now": now},
    )
    taken_over = before.status is RunStatus.RUNNING
    run = read_run(conn, row["id"])
    log.append(
        conn,
        EventType.RUN_STARTED,
        dumps({"execution": run.executions, "resumed": taken_over}),
        now,
    )
    return Claimed(run, Lease(run.id, token, owner, now + ttl), taken_over)


def heartbeat(
    conn: sqlite3.Connection, leases: Sequence[Lease], ttl: float, now: float
) -> dict[str, Commit]:
    outcome: dict[str, Commit] = {}
    for lease in leases:
        row = conn.execute(
            Q["heartbeat"], {"run_id": lease.run_id, "token": lease.token, "expires_at": now + ttl}
        ).fetchone()
        outcome[lease.run_id] = _LOST if row is None else Commit(True, bool(row[0]))
    return outcome


def release(conn: sqlite3.Connection, lease: Lease, now: float) -> str | None:
    """Put the run back in the queue if ``lease`` holds: its flow (``None``: it did not)."""
    row = conn.execute(Q["check_lease"], {"run_id": lease.run_id, "token": lease.token}).fetchone()
    if row is None:
        return None
    conn.execute(Q["release_run"], {"run": row["key"], "now": now})
    log = RunLog(row["key"], row["last_seq"])
    log.append(conn, EventType.RUN_QUEUED, dumps({"reason": "released"}), now)
    return str(row["flow"])


# --- a run's writes under its lease ---------------------------------------------------------


def commit(conn: sqlite3.Connection, lease: Lease, writes: Sequence[Write]) -> Commit:
    """Apply ``writes`` if ``lease`` holds (checked in this transaction)."""
    row = conn.execute(Q["check_lease"], {"run_id": lease.run_id, "token": lease.token}).fetchone()
    if row is None:
        return _LOST
    log = RunLog(row["key"], row["last_seq"])
    for write in writes:
        _APPLY[type(write)](conn, log, write)
    return Commit(True, bool(row["cancel_requested"]))


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
        },
    )


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
    PutCache: _put_cache,
    LinkArtifact: _link_artifact,
    EndRun: _end_run,
}


# --- control outside a lease ------------------------------------------------------------------


def retry_run(
    conn: sqlite3.Connection, run_id: str, now: float, *, from_step: str | None, auto: bool
) -> Run:
    """Queue a finished run again (see :meth:`Store.retry_run`)."""
    run, log = locked_run(conn, run_id)
    check_retry(run, now, from_step=from_step, auto=auto)
    steps = [step_record(run_id, r) for r in conn.execute(Q["get_steps"], {"run": log.key})]
    start = retry_start(run, steps, from_step)
    if run.lease_expired(now):  # its process died: close what it left running
        conn.execute(Q["fail_running_steps"], {"run": log.key, "at": now, "error": None})
    args = {"run": log.key, "position": start.position}
    if from_step is not None:
        conn.execute(Q["delete_items_from"], args)
        conn.execute(Q["invalidate_steps"], {**args, "named": start.position})
    else:
        if start.kind == "map":
            conn.execute(Q["reopen_items"], {"run": log.key, "step": start.name})
        conn.execute(Q["reopen_step"], args)
        later = {"run": log.key, "position": start.position + 1}
        conn.execute(Q["delete_items_from"], later)
        conn.execute(Q["invalidate_steps"], {**later, "named": -1})
    # Only automatic retries count against the run's automatic-retry budget.
    conn.execute(Q["requeue_run"], {"run": log.key, "now": now, "auto": int(auto)})
    log.append(
        conn,
        EventType.RUN_QUEUED,
        dumps({"retry": run.retry_count + 1, "from_step": start.name, "auto": auto}),
        now,
    )
    return read_run(conn, run_id)


def request_cancel(conn: sqlite3.Connection, run_id: str, now: float) -> Run:
    """Cancel a queued run, one waiting for an automatic retry, or one whose process died;
    flag a running one."""
    run, log = locked_run(conn, run_id)
    waiting = run.status is RunStatus.FAILED and run.retry_at is not None
    if run.status is RunStatus.QUEUED or waiting or run.lease_expired(now):
        _end_run(conn, log, EndRun(RunStatus.CANCELLED, now, close_steps=True))
        log.append(conn, EventType.RUN_CANCELLED, dumps({"requested": True}), now)
    elif run.status is RunStatus.RUNNING:
        # Only the flag: while the lease holds, its holder alone appends events.
        conn.execute(Q["request_cancel"], {"run": log.key, "now": now})
    else:
        raise InvalidTransition(
            run_id,
            run.status,
            f"run {run_id} has already finished ({run.status}): there is nothing to cancel",
        )
    return read_run(conn, run_id)


def delete_run(conn: sqlite3.Connection, run_id: str) -> None:
    """Delete a finished run (see :meth:`Store.delete_run`)."""
    run, log = locked_run(conn, run_id)
    check_delete(run)
    conn.execute(Q["delete_run"], {"run": log.key})


# --- artifacts and retention ------------------------------------------------------------------


def put_artifact(
    conn: sqlite3.Connection, artifact: Artifact, place: Callable[[], None], now: float
) -> None:
    conn.execute(
        Q["artifact_put"],
        {
            "sha256": artifact.sha256,
            "size": artifact.size,
            "content_type": artifact.content_type,
            "width": artifact.width,
            "height": artifact.height,
            "now": now,
        },
    )
    place()


def expire(
    conn: sqlite3.Connection, *, checkpoints_before: float, runs_before: float, now: float
) -> tuple[int, int, int]:
    """Expire old checkpoints, delete old runs and stale cache entries (the first part of
    :meth:`Store.collect`): ``(checkpoints expired, runs deleted, cache entries purged)``."""
    expired = conn.execute(Q["expire_checkpoints"], {"before": checkpoints_before}).fetchall()
    for row in expired:
        conn.execute(Q["expire_step_outputs"], {"run": row["key"]})
        conn.execute(Q["expire_items"], {"run": row["key"]})
    deleted = conn.execute(Q["delete_old_runs"], {"before": runs_before}).rowcount
    purged = conn.execute(Q["purge_cache"], {"now": now}).rowcount
    return len(expired), deleted, purged


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
