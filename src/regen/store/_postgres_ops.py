"""The PostgreSQL store's transactions: each function runs inside one, on the caller's
connection (rows as dicts).

As in SQLite, a change of state is written to the row where it lives with its event, in
the same transaction. Writes to a run first lock its row (``FOR UPDATE``): the lease is
checked under that lock, so a worker that lost its lease can no longer write (fencing).
A transaction's events are appended together at its end (:meth:`RunLog.save`), under the
lock that keeps event ids in commit order, held for as short a time as possible.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from regen.store import _queries
from regen.store._errors import InvalidTransition, RunNotFound, StoreError
from regen.store._event_types import EventType
from regen.store._records import (
    AddEvent,
    AddItems,
    Artifact,
    Claimed,
    ClaimedItems,
    Commit,
    CountAttempt,
    EndItem,
    EndRun,
    EndStep,
    ItemLease,
    Lease,
    LinkArtifact,
    NewRun,
    OpenItems,
    PutCache,
    Run,
    RunStatus,
    SkipItems,
    StartItem,
    StartStep,
    Write,
)
from regen.store._sqlite_rows import dumps, loads
from regen.store._sqlite_rows import item as item_record
from regen.store._sqlite_rows import run as run_record
from regen.store._sqlite_rows import step as step_record
from regen.store._transitions import check_delete, check_retry, retry_start

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    Conn: TypeAlias = AsyncConnection[dict[str, Any]]

Q = _queries.queries("postgres")
_LOST = Commit(False)


class RunLog:
    """A run being written to in this transaction: its number, its last event's seq, and
    the events to append when the transaction is done with its other writes. An item's
    end under a claim is sent at once and its event decided when its answer is read (at
    :meth:`save`, one round trip for all of them), so the events keep the writes' order."""

    __slots__ = ("entries", "key", "run_id", "seq")

    def __init__(self, key: int, seq: int, run_id: str) -> None:
        self.key = key
        self.seq = seq
        self.run_id = run_id
        self.entries: list[tuple[str, str, float] | tuple[Any, EndItem]] = []

    def append(self, type_: str, data: str, at: float) -> None:
        """Append an event (``data``: JSON text), numbered after the last at :meth:`save`."""
        self.entries.append((type_, data, at))

    def expect(self, cursor: Any, end: EndItem) -> None:
        """Append the event of an item's end if ``cursor`` (its update) returns a row."""
        self.entries.append((cursor, end))

    async def save(self, conn: Conn) -> None:
        """Write the events appended, the run's last seq, and a notification (sent by
        PostgreSQL when the transaction commits)."""
        if not self.entries:
            return
        events: list[tuple[int, float, str, str]] = []
        for entry in self.entries:
            if len(entry) == 2:
                found = await _ended(*entry)
                if found is None:
                    continue
                type_, data, at = found
            else:
                type_, data, at = entry
            self.seq += 1
            events.append((self.seq, at, type_, data))
        self.entries = []
        if not events:
            return
        seqs, ats, types, datas = zip(*events, strict=True)
        await conn.execute(Q["events_lock"])
        await conn.execute(
            Q["insert_events"],
            {
                "run": self.key,
                "seqs": list(seqs),
                "ats": list(ats),
                "types": list(types),
                "datas": list(datas),
            },
        )
        await conn.execute(Q["set_last_seq"], {"run": self.key, "seq": self.seq})
        await conn.execute(Q["notify"], {"run_id": self.run_id})


async def _ended(cursor: Any, w: EndItem) -> tuple[str, str, float] | None:
    """The event of an item's end, once its update answered: none if it changed nothing
    (the item was taken over, or had ended), ``item.skipped`` if the quota was met."""
    row = await cursor.fetchone()
    if row is None or w.event is None:
        return None
    if row["status"] == w.status:
        return EventType.item_ended(w.status), w.event, w.at
    data = dumps({"step": w.step, "item": w.idx, "key": w.key, "reason": "quota met"})
    return EventType.item_ended(row["status"]), data, w.at


async def _one(conn: Conn, query: str, args: dict[str, Any]) -> dict[str, Any] | None:
    cursor = await conn.execute(query, args)
    return await cursor.fetchone()


async def locked_run(conn: Conn, run_id: str) -> tuple[Run, RunLog]:
    """The run, its row locked, and its log (:class:`RunNotFound`)."""
    row = await _one(conn, Q["lock_run"], {"id": run_id})
    if row is None:
        raise RunNotFound(run_id)
    return run_record(row), RunLog(row["key"], row["last_seq"], run_id)


async def read_run(conn: Conn, run_id: str) -> Run:
    row = await _one(conn, Q["get_run"], {"id": run_id})
    if row is None:
        raise RunNotFound(run_id)
    return run_record(row)


# --- runs -----------------------------------------------------------------------------------


async def create_run(conn: Conn, new: NewRun, now: float) -> tuple[Run, bool]:
    row = await _one(
        conn,
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
    if row is None:  # the business key is taken: that run is the answer
        found = await _one(
            conn, Q["find_run"], {"flow": new.flow, "business_key": new.business_key}
        )
        if found is None:
            raise RunNotFound(new.id)
        return run_record(found), False
    key = int(row["key"])
    await conn.execute(
        Q["insert_steps"],
        {"run": key, "names": [n for n, _ in new.steps], "kinds": [k for _, k in new.steps]},
    )
    log = RunLog(key, 0, new.id)
    log.append(EventType.RUN_QUEUED, dumps({"flow": new.flow}), now)
    await log.save(conn)
    return await read_run(conn, new.id), True


async def claim(
    conn: Conn,
    owner: str,
    ttl: float,
    now: float,
    run_id: str | None,
    flows: Sequence[str] | None,
) -> Claimed | None:
    wanted = None if flows is None else list(flows)
    query = Q["claim_candidate"] if run_id is None else Q["claim_named"]
    before = await _one(conn, query, {"run_id": run_id, "flows": wanted, "now": now})
    if before is None:
        return None
    token = uuid.uuid4().hex
    args = {
        "run": before["key"],
        "owner": owner,
        "token": token,
        "expires_at": now + ttl,
        "now": now,
    }
    row = await _one(conn, Q["claim_run"], args)
    assert row is not None  # the row is locked by this transaction
    taken_over = before["status"] == RunStatus.RUNNING
    run = run_record(row)
    log = RunLog(row["key"], row["last_seq"], run.id)
    log.append(
        EventType.RUN_STARTED, dumps({"execution": run.executions, "resumed": taken_over}), now
    )
    await log.save(conn)
    return Claimed(run, Lease(run.id, token, owner, now + ttl), taken_over)


async def heartbeat(
    conn: Conn,
    leases: Sequence[Lease],
    ttl: float,
    now: float,
    items_of: str | None = None,
    item_tokens: Sequence[str] = (),
) -> dict[str, Commit]:
    if items_of is not None and item_tokens:
        await conn.execute(
            Q["heartbeat_items"],
            {"owner": items_of, "tokens": list(item_tokens), "expires_at": now + ttl},
        )
    if not leases:
        return {}
    # In run id order, so two transactions renewing overlapping runs lock them alike.
    ordered = sorted(leases, key=lambda lease: lease.run_id)
    cursor = await conn.execute(
        Q["heartbeat"],
        {
            "ids": [lease.run_id for lease in ordered],
            "tokens": [lease.token for lease in ordered],
            "expires_at": now + ttl,
        },
    )
    held = {row["id"]: bool(row["cancel_requested"]) for row in await cursor.fetchall()}
    return {
        lease.run_id: Commit(True, held[lease.run_id]) if lease.run_id in held else _LOST
        for lease in leases
    }


async def release(conn: Conn, lease: Lease, now: float) -> bool:
    row = await _one(conn, Q["check_lease"], {"run_id": lease.run_id, "token": lease.token})
    if row is None:
        return False
    await conn.execute(Q["release_run"], {"run": row["key"], "now": now})
    log = RunLog(row["key"], row["last_seq"], lease.run_id)
    log.append(EventType.RUN_QUEUED, dumps({"reason": "released"}), now)
    await log.save(conn)
    return True


# --- items claimed by any worker --------------------------------------------------------------


async def claim_items(
    conn: Conn,
    lease: ItemLease,
    ttl: float,
    now: float,
    *,
    limit: int,
    named: bool,
    flows: Sequence[str] | None,
) -> ClaimedItems | None:
    """Lease items of the step ``lease`` names (``named``), or of the oldest open one.

    The run's row is not locked (its writers go on meanwhile); with a quota, the step's row
    is, so the claims of one step count what is succeeded and in flight one at a time (an
    item's end, under the run's lock, moves an item from one count to the other). A claim
    lost in a crash of the database only leaves its items pending: it is committed without
    waiting for the disk."""
    run_id, step_name = lease.run_id, lease.step
    await conn.execute(Q["claim_lightly"])
    if not named:
        found = await _one(
            conn,
            Q["open_map_step"],
            {"owner": lease.owner, "flows": None if flows is None else list(flows), "now": now},
        )
        if found is None:
            return None
        run_id, step_name = found["run_id"], found["step"]
    # Sent together, read together (one round trip in pipeline mode).
    reading = await conn.execute(Q["get_run"], {"id": run_id})
    stepping = await conn.execute(Q["step_named"], {"run_id": run_id, "step": step_name})
    found_run, row = await reading.fetchone(), await stepping.fetchone()
    if found_run is None or row is None:
        return None
    run = run_record(found_run)
    if run.status is not RunStatus.RUNNING or run.cancel_requested:
        return None
    if row["status"] != "running" or row["items_total"] is None:
        return None
    args: dict[str, Any] = {"run": found_run["key"], "step": step_name, "now": now}
    if row["quota"] is not None:
        await conn.execute(Q["lock_step"], args)
        succeeding = await conn.execute(Q["items_succeeded"], args)
        running = await conn.execute(Q["items_running_leased"], args)
        done, busy = await succeeding.fetchone(), await running.fetchone()
        assert done is not None
        assert busy is not None
        limit = min(limit, row["quota"] - done["n"] - busy["n"])
    if limit <= 0:
        return None
    cursor = await conn.execute(
        Q["lease_items"],
        {
            **args,
            "owner": lease.owner,
            "token": lease.token,
            "expires_at": now + ttl,
            "limit": limit,
        },
    )
    rows = await cursor.fetchall()
    if not rows:
        return None
    items = sorted((item_record(run_id, r) for r in rows), key=lambda i: i.idx)
    held = ItemLease(run_id, step_name, lease.token, lease.owner)
    return ClaimedItems(run, step_record(run_id, row), held, items)


async def commit_items(
    conn: Conn, lease: ItemLease, writes: Sequence[Write], sent: Sent | None = None
) -> Commit:
    """Apply the writes of items run under ``lease`` (checked under the run's row lock)."""
    row = await _one(
        conn,
        Q["check_item_lease"],
        {"run_id": lease.run_id, "step": lease.step, "owner": lease.owner},
    )
    if row is None:
        return _LOST
    return await _apply(conn, lease.run_id, row, writes, sent)


# --- a run's writes under its lease ---------------------------------------------------------


class Sent:
    """What a run's commit sent: enough to tell afterwards whether it took effect, should
    the connection be lost before the answer to its ``COMMIT`` arrived."""

    __slots__ = ("after", "before", "outcome")

    def __init__(self) -> None:
        self.before = 0
        self.after = 0
        self.outcome: Commit | None = None


async def commit(
    conn: Conn, lease: Lease, writes: Sequence[Write], sent: Sent | None = None
) -> Commit:
    """Apply ``writes`` if ``lease`` holds (checked under the run's row lock)."""
    row = await _one(conn, Q["check_lease"], {"run_id": lease.run_id, "token": lease.token})
    if row is None:
        return _LOST
    return await _apply(conn, lease.run_id, row, writes, sent)


async def _apply(
    conn: Conn, run_id: str, row: dict[str, Any], writes: Sequence[Write], sent: Sent | None
) -> Commit:
    log = RunLog(row["key"], row["last_seq"], run_id)
    for write in writes:
        await _APPLY[type(write)](conn, log, write)
    await log.save(conn)
    outcome = Commit(True, bool(row["cancel_requested"]))
    if sent is not None:
        sent.before, sent.after, sent.outcome = row["last_seq"], log.seq, outcome
    return outcome


async def landed(conn: Conn, lease: Lease | ItemLease, sent: Sent) -> Commit | None:
    """The outcome of a commit whose connection was lost during its ``COMMIT``, if it took
    effect; ``None`` if it did not, and may be sent again (its writes without events are
    upserts: sending them twice changes nothing)."""
    if sent.outcome is None:
        return None  # its lease was lost: nothing was written
    row = await _one(conn, Q["get_run"], {"id": lease.run_id})
    seq = None if row is None else row["last_seq"]
    if sent.after != sent.before and seq == sent.after:
        return sent.outcome
    if seq == sent.before:
        return None
    raise StoreError(
        f"run {lease.run_id}: the database connection was lost while committing, and the "
        "run has changed since: this process stops writing to it"
    )


async def _add_event(conn: Conn, log: RunLog, w: AddEvent) -> None:
    log.append(w.type, w.data, w.at)


async def _start_step(conn: Conn, log: RunLog, w: StartStep) -> None:
    await conn.execute(Q["start_step"], {"run": log.key, "position": w.position, "at": w.at})
    log.append(EventType.STEP_STARTED, w.data, w.at)


async def _end_step(conn: Conn, log: RunLog, w: EndStep) -> None:
    await conn.execute(
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
    log.append(EventType.step_ended(w.status), w.data, w.at)


async def _count_attempt(conn: Conn, log: RunLog, w: CountAttempt) -> None:
    await conn.execute(
        Q["step_attempts"], {"run": log.key, "position": w.position, "attempts": w.attempts}
    )


async def _start_item(conn: Conn, log: RunLog, w: StartItem) -> None:
    await conn.execute(
        Q["item_start"],
        {"run": log.key, "step": w.step, "idx": w.idx, "key": w.key, "input": w.input, "at": w.at},
    )


async def _end_item(conn: Conn, log: RunLog, w: EndItem) -> None:
    if w.token is not None:
        await _finish_item(conn, log, w)
        return
    await conn.execute(
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
            "cached": w.cached,
            "at": w.at,
        },
    )


async def _finish_item(conn: Conn, log: RunLog, w: EndItem) -> None:
    """An item's end under its claim: fenced by the token, held to the step's quota (the
    run's row is locked: item ends of one run are counted one after the other)."""
    cursor = await conn.execute(
        Q["item_finish"],
        {
            "run": log.key,
            "step": w.step,
            "idx": w.idx,
            "token": w.token,
            "status": str(w.status),
            "output": w.output,
            "attempts": w.attempts,
            "errors": w.errors,
            "cached": w.cached,
            "at": w.at,
        },
    )
    log.expect(cursor, w)


async def _add_items(conn: Conn, log: RunLog, w: AddItems) -> None:
    await conn.execute(
        Q["items_add"],
        {
            "run": log.key,
            "step": w.step,
            "idxs": [r[0] for r in w.rows],
            "keys": [r[1] for r in w.rows],
            "inputs": [r[2] for r in w.rows],
        },
    )


async def _open_items(conn: Conn, log: RunLog, w: OpenItems) -> None:
    await conn.execute(
        Q["open_items"],
        {"run": log.key, "position": w.position, "quota": w.quota, "total": w.total},
    )


async def _skip_items(conn: Conn, log: RunLog, w: SkipItems) -> None:
    await conn.execute(Q["skip_pending_items"], {"run": log.key, "step": w.step, "at": w.at})


async def _put_cache(conn: Conn, log: RunLog, w: PutCache) -> None:
    await conn.execute(
        Q["cache_put"],
        {"key": w.key, "step": w.step, "value": w.value, "at": w.at, "expires_at": w.expires_at},
    )


async def _link_artifact(conn: Conn, log: RunLog, w: LinkArtifact) -> None:
    await conn.execute(
        Q["artifact_ref"], {"sha256": w.sha256, "run": log.key, "step": w.step, "idx": w.idx}
    )


async def _end_run(conn: Conn, log: RunLog, w: EndRun) -> None:
    closing: list[dict[str, Any]] = []
    if w.close_steps:
        cursor = await conn.execute(Q["open_steps"], {"run": log.key})
        closing = await cursor.fetchall()
    await conn.execute(
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
    await conn.execute(Q["fail_running_steps"], {"run": log.key, "at": w.at, "error": w.error})
    await conn.execute(Q["skip_pending_steps"], {"run": log.key})
    # The log's record of what the cancellation closed: ``step.failed`` for a step it
    # stopped (with the run's error), ``step.skipped`` for each one that never ran.
    error = loads(w.error)
    for row in closing:
        data: dict[str, Any] = {"step": row["name"]}
        if row["status"] == "running":
            if error is not None:
                data["error"] = error
            log.append(EventType.STEP_FAILED, dumps(data), w.at)
        else:
            log.append(EventType.STEP_SKIPPED, dumps(data), w.at)


_APPLY: dict[type, Callable[[Conn, RunLog, Any], Awaitable[None]]] = {
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


# --- control outside a lease ------------------------------------------------------------------


async def retry_run(
    conn: Conn, run_id: str, now: float, *, from_step: str | None, auto: bool
) -> Run:
    """Queue a finished run again (see :meth:`Store.retry_run`)."""
    run, log = await locked_run(conn, run_id)
    check_retry(run, now, from_step=from_step, auto=auto)
    cursor = await conn.execute(Q["get_steps"], {"run_id": run_id})
    steps = [step_record(run_id, r) for r in await cursor.fetchall()]
    start = retry_start(run, steps, from_step)
    if run.lease_expired(now):  # its worker died: close what it left running
        await conn.execute(Q["fail_running_steps"], {"run": log.key, "at": now, "error": None})
    args = {"run": log.key, "position": start.position}
    if from_step is not None:
        await conn.execute(Q["delete_items_from"], args)
        await conn.execute(Q["invalidate_steps"], {**args, "named": start.position})
    else:
        if start.kind == "map":
            await conn.execute(Q["reopen_items"], {"run": log.key, "step": start.name})
        await conn.execute(Q["reopen_step"], args)
        later = {"run": log.key, "position": start.position + 1}
        await conn.execute(Q["delete_items_from"], later)
        await conn.execute(Q["invalidate_steps"], {**later, "named": -1})
    # Only automatic retries count against the run's automatic-retry budget.
    await conn.execute(Q["requeue_run"], {"run": log.key, "now": now, "auto": int(auto)})
    log.append(
        EventType.RUN_QUEUED,
        dumps({"retry": run.retry_count + 1, "from_step": start.name, "auto": auto}),
        now,
    )
    await log.save(conn)
    return await read_run(conn, run_id)


async def delete_run(conn: Conn, run_id: str) -> None:
    """Delete a finished run (see :meth:`Store.delete_run`)."""
    run, log = await locked_run(conn, run_id)
    check_delete(run)
    await conn.execute(Q["delete_run"], {"run": log.key})


async def request_cancel(conn: Conn, run_id: str, now: float) -> Run:
    """Cancel a queued run, one waiting for an automatic retry, or one whose worker died;
    flag a running one."""
    run, log = await locked_run(conn, run_id)
    waiting = run.status is RunStatus.FAILED and run.retry_at is not None
    if run.status is RunStatus.QUEUED or waiting or run.lease_expired(now):
        await _end_run(conn, log, EndRun(RunStatus.CANCELLED, now, close_steps=True))
        log.append(EventType.RUN_CANCELLED, dumps({"requested": True}), now)
        await log.save(conn)
    elif run.status is RunStatus.RUNNING:
        # Only the flag: while the lease holds, its holder alone appends events.
        await conn.execute(Q["request_cancel"], {"run": log.key, "now": now})
    else:
        raise InvalidTransition(
            run_id,
            run.status,
            f"run {run_id} has already finished ({run.status}): there is nothing to cancel",
        )
    return await read_run(conn, run_id)


# --- artifacts and retention ------------------------------------------------------------------


async def put_artifact(
    conn: Conn, artifact: Artifact, place: Callable[[], None], now: float
) -> None:
    await conn.execute(
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


async def expire(
    conn: Conn, *, checkpoints_before: float, runs_before: float, now: float
) -> tuple[int, int, int]:
    """Expire old checkpoints, delete old runs and stale cache entries (the first part of
    :meth:`Store.collect`): ``(checkpoints expired, runs deleted, cache entries purged)``."""
    cursor = await conn.execute(Q["expire_checkpoints"], {"before": checkpoints_before})
    expired = [row["key"] for row in await cursor.fetchall()]
    if expired:
        await conn.execute(Q["expire_step_outputs"], {"runs": expired})
        await conn.execute(Q["expire_items"], {"runs": expired})
    deleted = (await conn.execute(Q["delete_old_runs"], {"before": runs_before})).rowcount
    purged = (await conn.execute(Q["purge_cache"], {"now": now})).rowcount
    return len(expired), deleted, purged


async def delete_artifacts(conn: Conn, shas: list[str], remove_file: Callable[[str], None]) -> int:
    """Delete the artifacts still unreferenced, and their files (each row locked by its
    delete until the transaction ends, so no put can interleave); how many were deleted."""
    removed = 0
    for sha in shas:
        if (await conn.execute(Q["delete_artifact"], {"sha256": sha})).rowcount:
            remove_file(sha)
            removed += 1
    return removed
