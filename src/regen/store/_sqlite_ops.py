"""The SQLite store's transactions: each function runs inside one, on the caller's connection.

Every change of state is written to the row where it lives, with its event, in the same
transaction: a step's end updates the step's row (and its checkpoint) and appends its
``step.<status>`` event; an item's end, its row and its event. A commit checks the lease
here and applies its writes with :mod:`regen.store._sqlite_apply`.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence

from regen.store import _queries
from regen.store._errors import InvalidTransition, RunNotFound
from regen.store._event_types import EventType
from regen.store._records import (
    Artifact,
    Claimed,
    ClaimedItems,
    Commit,
    EndRun,
    ItemLease,
    Lease,
    NewRun,
    Run,
    RunStatus,
    Write,
)
from regen.store._sqlite_apply import RunLog, apply
from regen.store._sqlite_rows import dumps
from regen.store._sqlite_rows import item as item_record
from regen.store._sqlite_rows import run as run_record
from regen.store._sqlite_rows import step as step_record
from regen.store._transitions import check_delete, check_retry, retry_start

Q = _queries.queries("sqlite")
_LOST = Commit(False)


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
    conn: sqlite3.Connection,
    leases: Sequence[Lease],
    ttl: float,
    now: float,
    items_of: str | None = None,
    item_tokens: Sequence[str] = (),
) -> dict[str, Commit]:
    if items_of is not None and item_tokens:
        conn.execute(
            Q["heartbeat_items"],
            {"owner": items_of, "tokens": dumps(list(item_tokens)), "expires_at": now + ttl},
        )
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


# --- items claimed by any worker --------------------------------------------------------------


def claim_items(
    conn: sqlite3.Connection,
    lease: ItemLease,
    ttl: float,
    now: float,
    *,
    limit: int,
    named: bool,
    flows: Sequence[str] | None,
) -> ClaimedItems | None:
    """Lease items of the step ``lease`` names (``named``), or of the oldest open one."""
    run_id, step_name = lease.run_id, lease.step
    if not named:
        found = open_map_step(conn, lease.owner, flows, now)
        if found is None:
            return None
        run_id, step_name = found
    run = read_run(conn, run_id)
    if run.status is not RunStatus.RUNNING or run.cancel_requested:
        return None
    key = conn.execute(Q["run_key"], {"run_id": run_id}).fetchone()[0]
    row = conn.execute(Q["step_named"], {"run": key, "step": step_name}).fetchone()
    if row is None or row["status"] != "running" or row["items_total"] is None:
        return None
    args = {"run": key, "step": step_name, "now": now}
    if row["quota"] is not None:
        succeeded = conn.execute(Q["items_succeeded"], args).fetchone()[0]
        running = conn.execute(Q["items_running_leased"], args).fetchone()[0]
        limit = min(limit, row["quota"] - succeeded - running)
    if limit <= 0:
        return None
    rows = conn.execute(
        Q["lease_items"],
        {
            **args,
            "owner": lease.owner,
            "token": lease.token,
            "expires_at": now + ttl,
            "limit": limit,
        },
    ).fetchall()
    if not rows:
        return None
    items = sorted((item_record(run_id, r) for r in rows), key=lambda i: i.idx)
    held = ItemLease(run_id, step_name, lease.token, lease.owner)
    return ClaimedItems(run, step_record(run_id, row), held, items)


def open_map_step(
    conn: sqlite3.Connection, owner: str, flows: Sequence[str] | None, now: float
) -> tuple[str, str] | None:
    """``(run id, step)`` of the oldest map step ``owner`` could help with, if any."""
    wanted = None if flows is None else dumps(list(flows))
    found = conn.execute(
        Q["open_map_step"], {"owner": owner, "flows": wanted, "now": now}
    ).fetchone()
    return None if found is None else (found["run_id"], found["step"])


def release_items(conn: sqlite3.Connection, lease: ItemLease) -> int:
    """Give back the items claimed under ``lease``'s token that have not ended."""
    args = {"run_id": lease.run_id, "step": lease.step, "token": lease.token}
    return conn.execute(Q["release_items"], args).rowcount


def commit_items(conn: sqlite3.Connection, lease: ItemLease, writes: Sequence[Write]) -> Commit:
    """Apply the writes of items run under ``lease`` (checked in this transaction)."""
    row = conn.execute(
        Q["check_item_lease"],
        {"run_id": lease.run_id, "step": lease.step, "owner": lease.owner},
    ).fetchone()
    if row is None:
        return _LOST
    apply(conn, RunLog(row["key"], row["last_seq"]), writes)
    return Commit(True, bool(row["cancel_requested"]))


# --- a run's writes under its lease ---------------------------------------------------------


def commit(conn: sqlite3.Connection, lease: Lease, writes: Sequence[Write]) -> Commit:
    """Apply ``writes`` if ``lease`` holds (checked in this transaction)."""
    row = conn.execute(Q["check_lease"], {"run_id": lease.run_id, "token": lease.token}).fetchone()
    if row is None:
        return _LOST
    apply(conn, RunLog(row["key"], row["last_seq"]), writes)
    return Commit(True, bool(row["cancel_requested"]))


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
        apply(conn, log, [EndRun(RunStatus.CANCELLED, now, close_steps=True)])
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
    _keeping_event_numbers(conn, lambda: conn.execute(Q["delete_run"], {"run": log.key}).rowcount)


def _keeping_event_numbers(conn: sqlite3.Connection, delete: Callable[[], int]) -> int:
    """Delete runs (their events go with them) without freeing the newest event number:
    SQLite numbers a new row after the largest left, so when the newest events go, a
    placeholder keeps their number and a follower's cursor never sees a number twice."""
    newest = conn.execute(Q["newest_event"]).fetchone()[0]
    deleted = delete()
    if deleted and conn.execute(Q["newest_event"]).fetchone()[0] < newest:
        conn.execute(Q["drop_event_placeholders"], {"id": newest})
        conn.execute(Q["keep_event_number"], {"id": newest})
    return deleted


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
    deleted = _keeping_event_numbers(
        conn, lambda: conn.execute(Q["delete_old_runs"], {"before": runs_before}).rowcount
    )
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
