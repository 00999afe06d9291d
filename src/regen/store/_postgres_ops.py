"""The PostgreSQL store's transactions: each function runs on the caller's connection
(rows as dicts), as one statement or inside one transaction.

As in SQLite, a change of state is written to the row where it lives with its event, in
the same transaction. A run's writes are applied by the server (``regen_apply`` in the
schema), so a commit, a claim and a new run each cost one statement and one round trip:
the run's row is locked (``FOR UPDATE``) and the lease checked under that lock, so a
worker that lost its lease can no longer write (fencing); the events are appended last,
under the lock that keeps event ids in commit order, held for as short a time as possible.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from regen.store import _queries
from regen.store._errors import InvalidTransition, RunNotFound, StoreError
from regen.store._event_types import EventType
from regen.store._records import (
    AddEvent,
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
from regen.store._sqlite_rows import dumps
from regen.store._sqlite_rows import item as item_record
from regen.store._sqlite_rows import run as run_record
from regen.store._sqlite_rows import step as step_record
from regen.store._transitions import check_delete, check_retry, retry_start

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    Conn: TypeAlias = AsyncConnection[dict[str, Any]]

Q = _queries.queries("postgres")
_LOST = Commit(False)


def encode(writes: Sequence[Write]) -> str:
    """Writes as the JSON array ``regen_apply`` reads: one object per write, ``op`` naming
    its kind, its fields by name."""
    return json.dumps(
        [{"op": type(w).__name__, **w._asdict()} for w in writes],
        separators=(",", ":"),
        ensure_ascii=False,
    )


async def _one(conn: Conn, query: str, args: dict[str, Any]) -> dict[str, Any] | None:
    cursor = await conn.execute(query, args)
    return await cursor.fetchone()


async def locked_run(conn: Conn, run_id: str) -> tuple[Run, int]:
    """The run, its row locked, and its number (:class:`RunNotFound`)."""
    row = await _one(conn, Q["lock_run"], {"id": run_id})
    if row is None:
        raise RunNotFound(run_id)
    return run_record(row), int(row["key"])


async def apply(conn: Conn, key: int, run_id: str, writes: Sequence[Write]) -> None:
    """Apply writes to a run whose row this transaction has locked."""
    await conn.execute(Q["apply"], {"run": key, "run_id": run_id, "writes": encode(writes)})


async def read_run(conn: Conn, run_id: str) -> Run:
    row = await _one(conn, Q["get_run"], {"id": run_id})
    if row is None:
        raise RunNotFound(run_id)
    return run_record(row)


# --- runs -----------------------------------------------------------------------------------


async def create_run(conn: Conn, new: NewRun, now: float) -> tuple[Run, bool]:
    """One statement, safe to send again: a repeat finds the run its first sending made."""
    queued = AddEvent(EventType.RUN_QUEUED, dumps({"flow": new.flow}), now)
    row = await _one(
        conn,
        Q["create_run"],
        {
            "id": new.id,
            "flow": new.flow,
            "flow_ref": new.flow_ref,
            "business_key": new.business_key,
            "params": new.params,
            "now": now,
            "max_retries": new.max_retries,
            "retry_delay": new.retry_delay,
            "names": [n for n, _ in new.steps],
            "kinds": [k for _, k in new.steps],
            "writes": encode([queued]),
        },
    )
    found = None if row is None else row["run"]
    if found is None:  # the run holding the business key was deleted meanwhile
        raise RunNotFound(new.id)
    return run_record(found), bool(found["created"])


def new_token() -> str:
    """A lease token."""
    return uuid.uuid4().hex


async def claim(
    conn: Conn,
    owner: str,
    token: str,
    ttl: float,
    now: float,
    run_id: str | None,
    flows: Sequence[str] | None,
) -> Claimed | None:
    args = {
        "owner": owner,
        "token": token,
        "expires_at": now + ttl,
        "now": now,
        "run_id": run_id,
        "flows": None if flows is None else list(flows),
    }
    row = await _one(conn, Q["claim"], args)
    found = None if row is None else row["run"]
    if found is None:
        return None
    run = run_record(found)
    return Claimed(run, Lease(run.id, token, owner, now + ttl), bool(found["taken_over"]))


async def claimed(conn: Conn, owner: str, token: str, ttl: float, now: float) -> Claimed | None:
    """The run a claim took with ``token``, if that claim landed though its answer was lost
    (``None``: it did not, and may be sent again)."""
    row = await _one(conn, Q["claimed_with"], {"token": token})
    if row is None:
        return None
    started = json.loads(row["started"] or "{}")
    return Claimed(
        run_record(row), Lease(row["id"], token, owner, now + ttl), bool(started.get("resumed"))
    )


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


async def release(conn: Conn, lease: Lease, now: float) -> str | None:
    """Put the run back in the queue if ``lease`` holds: its flow (``None``: it did not)."""
    row = await _one(conn, Q["check_lease"], {"run_id": lease.run_id, "token": lease.token})
    if row is None:
        return None
    await conn.execute(Q["release_run"], {"run": row["key"], "now": now})
    queued = AddEvent(EventType.RUN_QUEUED, dumps({"reason": "released"}), now)
    await apply(conn, row["key"], lease.run_id, [queued])
    await conn.execute(Q["notify_queue"], {"flow": row["flow"]})
    return str(row["flow"])


# --- items claimed by any worker --------------------------------------------------------------


async def claimed_items(conn: Conn, lease: ItemLease) -> ClaimedItems | None:
    """The items a claim leased under ``lease.token`` (each claim's own), if that claim
    landed though its answer was lost; ``None`` if it took none, and may be sent again."""
    cursor = await conn.execute(Q["claimed_items"], {"owner": lease.owner, "token": lease.token})
    rows = await cursor.fetchall()
    if not rows:
        return None
    run_id, step_name = rows[0]["run_id"], rows[0]["step"]
    reading = await conn.execute(Q["get_run"], {"id": run_id})
    stepping = await conn.execute(Q["step_named"], {"run_id": run_id, "step": step_name})
    found_run, row = await reading.fetchone(), await stepping.fetchone()
    if found_run is None or row is None:
        return None
    items = [item_record(run_id, r) for r in rows]
    held = ItemLease(run_id, step_name, lease.token, lease.owner)
    return ClaimedItems(run_record(found_run), step_record(run_id, row), held, items)


async def release_items(conn: Conn, lease: ItemLease) -> int:
    """Give back the items claimed under ``lease``'s token that have not ended; idle
    workers hear of them on the regen_queue channel, the run's own execution (waiting for
    the step's items) on regen_events."""
    args = {"run_id": lease.run_id, "step": lease.step, "token": lease.token}
    rows = await (await conn.execute(Q["release_items"], args)).fetchall()
    if rows:
        await conn.execute(Q["notify_queue"], {"flow": rows[0]["flow"]})
        await conn.execute(Q["notify_run"], {"run_id": lease.run_id})
    return len(rows)


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


class Sent:
    """What an item commit sent: enough to tell afterwards whether it took effect, should
    the connection be lost before the answer to its ``COMMIT`` arrived."""

    __slots__ = ("after", "before", "outcome")

    def __init__(self) -> None:
        self.before = 0
        self.after = 0
        self.outcome: Commit | None = None


async def commit_items(conn: Conn, lease: ItemLease, writes: Sequence[Write], sent: Sent) -> Commit:
    """Apply the writes of items run under ``lease`` (checked under the run's row lock, in
    one statement: ``regen_commit_items``). Several workers commit to one run at once, so
    a commit's name cannot tell whether it landed: the run's event numbers before and
    after it, kept in ``sent`` before the ``COMMIT`` is sent, do (:func:`landed`)."""
    args = {
        "run_id": lease.run_id,
        "step": lease.step,
        "owner": lease.owner,
        "writes": encode(writes),
    }
    row = await _one(conn, Q["commit_items"], args)
    if row is None or not row["lease_held"]:
        return _LOST
    outcome = Commit(True, bool(row["cancel_asked"]))
    sent.before, sent.after, sent.outcome = row["seq_before"], row["seq_after"], outcome
    return outcome


async def landed(conn: Conn, lease: ItemLease, sent: Sent) -> Commit | None:
    """The outcome of an item commit whose connection was lost during its ``COMMIT``, if it
    took effect; ``None`` if it did not, and may be sent again (its writes without events
    are upserts or fenced by their claim: sending them twice changes nothing)."""
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


# --- a run's writes under its lease ---------------------------------------------------------


async def commit(conn: Conn, lease: Lease, writes: Sequence[Write], name: str) -> Commit:
    """Apply ``writes`` if ``lease`` holds, in one statement. ``name`` names this commit:
    sent again after its answer was lost, a commit that landed is not applied twice."""
    args = {
        "run_id": lease.run_id,
        "token": lease.token,
        "commit": name,
        "writes": encode(writes),
    }
    row = await _one(conn, Q["commit"], args)
    if row is None or not row["lease_held"]:
        return _LOST
    return Commit(True, bool(row["cancel_asked"]))


# --- control outside a lease ------------------------------------------------------------------


async def retry_run(
    conn: Conn, run_id: str, now: float, *, from_step: str | None, auto: bool
) -> Run:
    """Queue a finished run again (see :meth:`Store.retry_run`)."""
    run, key = await locked_run(conn, run_id)
    check_retry(run, now, from_step=from_step, auto=auto)
    cursor = await conn.execute(Q["get_steps"], {"run_id": run_id})
    steps = [step_record(run_id, r) for r in await cursor.fetchall()]
    start = retry_start(run, steps, from_step)
    if run.lease_expired(now):  # its worker died: close what it left running
        await conn.execute(Q["fail_running_steps"], {"run": key, "at": now, "error": None})
    args = {"run": key, "position": start.position}
    if from_step is not None:
        await conn.execute(Q["delete_items_from"], args)
        await conn.execute(Q["invalidate_steps"], {**args, "named": start.position})
    else:
        if start.kind == "map":
            await conn.execute(Q["reopen_items"], {"run": key, "step": start.name})
        await conn.execute(Q["reopen_step"], args)
        later = {"run": key, "position": start.position + 1}
        await conn.execute(Q["delete_items_from"], later)
        await conn.execute(Q["invalidate_steps"], {**later, "named": -1})
    # Only automatic retries count against the run's automatic-retry budget.
    await conn.execute(Q["requeue_run"], {"run": key, "now": now, "auto": int(auto)})
    queued = {"retry": run.retry_count + 1, "from_step": start.name, "auto": auto}
    await apply(conn, key, run_id, [AddEvent(EventType.RUN_QUEUED, dumps(queued), now)])
    await conn.execute(Q["notify_queue"], {"flow": run.flow})
    return await read_run(conn, run_id)


async def delete_run(conn: Conn, run_id: str) -> None:
    """Delete a finished run (see :meth:`Store.delete_run`)."""
    run, key = await locked_run(conn, run_id)
    check_delete(run)
    await conn.execute(Q["delete_run"], {"run": key})


async def request_cancel(conn: Conn, run_id: str, now: float) -> Run:
    """Cancel a queued run, one waiting for an automatic retry, or one whose worker died;
    flag a running one."""
    run, key = await locked_run(conn, run_id)
    waiting = run.status is RunStatus.FAILED and run.retry_at is not None
    if run.status is RunStatus.QUEUED or waiting or run.lease_expired(now):
        cancelled = AddEvent(EventType.RUN_CANCELLED, dumps({"requested": True}), now)
        await apply(
            conn, key, run_id, [EndRun(RunStatus.CANCELLED, now, close_steps=True), cancelled]
        )
    elif run.status is RunStatus.RUNNING:
        # Only the flag: while the lease holds, its holder alone appends events.
        await conn.execute(Q["request_cancel"], {"run": key, "now": now})
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
