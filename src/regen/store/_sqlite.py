"""The SQLite store: one database file, shared safely by the processes of one machine."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from regen.store import _queries
from regen.store import _sqlite_ops as ops
from regen.store import _sqlite_state as state
from regen.store._interface import Listener, QueueListener, Store
from regen.store._location import auto_upgrade
from regen.store._records import (
    Artifact,
    Claimed,
    ClaimedItems,
    Commit,
    Count,
    Event,
    GcCounts,
    HealthCheck,
    Item,
    ItemLease,
    ItemStatus,
    Lease,
    NewRun,
    OpenItems,
    Run,
    RunStatus,
    Step,
    Write,
)
from regen.store._sqlite_db import connect, integrity_problems
from regen.store._sqlite_rows import artifact, dumps, event, health_check, item, run, step
from regen.store._sqlite_thread import SQLiteThread

Q = _queries.queries("sqlite")
T = TypeVar("T")

# Listeners per database file, so stores opened on one file in one process wake each other.
_listeners: dict[str, list[Listener]] = {}
_queue_listeners: dict[str, list[QueueListener]] = {}
_listeners_lock = threading.Lock()


class SQLiteStore(Store):
    """:class:`Store` on one SQLite file (stdlib ``sqlite3``, WAL).

    Two threads of its own, each with its connection: one writes (committing the runs'
    writes queued meanwhile together), one reads, so a read never waits behind a write
    stuck on another process's lock. Other processes open their own connections and
    SQLite's file locks keep them apart. ``readonly``: open for reading only (no writer,
    no schema change; for commands that only read). ``upgrade``: create the schema or
    bring an older one up to date (default: ``REGEN_DB_AUTO_UPGRADE``, on unless ``0``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        upgrade: bool | None = None,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.location = f"sqlite:///{self.path}"
        self.readonly = readonly
        self._key = str(self.path)
        where = str(self.path)
        self._writer: SQLiteThread | None = None
        if not readonly:
            upgrading = auto_upgrade() if upgrade is None else upgrade
            self._writer = SQLiteThread(
                "regen-sqlite-writer",
                lambda: connect(self.path, upgrade=upgrading),
                where,
                write=True,
                changed=self._notify,
            )
        self._reader = SQLiteThread(
            "regen-sqlite-reader", lambda: connect(self.path, readonly=True), where, write=False
        )

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # --- plumbing ---------------------------------------------------------------------------

    def _write_thread(self) -> SQLiteThread:
        if self._writer is None:
            from regen.store._errors import ReadOnlyStore  # noqa: PLC0415 - rare path

            raise ReadOnlyStore(f"{self.location} was opened read-only")
        return self._writer

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """:meth:`close`, from synchronous code (any thread)."""
        # The reader first: the last connection to close folds the write-ahead log into
        # the database file, which only the writer's connection may do.
        self._reader.close()
        if self._writer is not None:
            self._writer.close()

    async def check(self) -> list[str]:
        # A connection of its own: the store's may have stopped at the damage.
        return await asyncio.to_thread(integrity_problems, self.path)

    def _notify(self, run_ids: set[str]) -> None:
        _tell(_listeners, self._key, run_ids)

    def _queued(self, flow: str) -> None:
        _tell(_queue_listeners, self._key, (flow,))

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        return _add(_listeners, self._key, listener)

    def add_queue_listener(self, listener: QueueListener) -> Callable[[], None]:
        return _add(_queue_listeners, self._key, listener)

    # --- runs -----------------------------------------------------------------------------

    async def create_run(self, new: NewRun, now: float) -> tuple[Run, bool]:
        made, created = await self._write_thread().run(
            lambda c: ops.create_run(c, new, now), new.id
        )
        if created:
            self._queued(made.flow)
        return made, created

    async def get_run(self, run_id: str) -> Run | None:
        def read(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(Q["get_run"], {"id": run_id}).fetchone()
            return None if row is None else run(row)

        return await self._reader.run(read)

    async def find_run(self, flow: str, business_key: str) -> Run | None:
        def read(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(
                Q["find_run"], {"flow": flow, "business_key": business_key}
            ).fetchone()
            return None if row is None else run(row)

        return await self._reader.run(read)

    async def list_runs(
        self,
        *,
        statuses: Sequence[RunStatus] | None = None,
        flow: str | None = None,
        before: float | None = None,
        limit: int = 50,
        id_prefix: str | None = None,
    ) -> list[Run]:
        wanted = None if statuses is None else dumps([str(s) for s in statuses])
        args = {
            "statuses": wanted,
            "flow": flow,
            "before": before,
            "limit": limit,
            "id_prefix": id_prefix,
        }
        return await self._reader.run(
            lambda c: [run(row) for row in c.execute(Q["list_runs"], args)]
        )

    async def get_steps(self, run_id: str) -> list[Step]:
        def read(conn: sqlite3.Connection) -> list[Step]:
            key = _run_key(conn, run_id)
            if key is None:
                return []
            return [step(run_id, row) for row in conn.execute(Q["get_steps"], {"run": key})]

        return await self._reader.run(read)

    async def get_items(
        self,
        run_id: str,
        step: str,
        *,
        after: int = -1,
        limit: int = 1000,
        status: ItemStatus | None = None,
    ) -> list[Item]:
        def read(conn: sqlite3.Connection) -> list[Item]:
            key = _run_key(conn, run_id)
            args = {
                "run": key,
                "step": step,
                "after": after,
                "limit": limit,
                "status": None if status is None else str(status),
            }
            return [item(run_id, row) for row in conn.execute(Q["get_items"], args)]

        return await self._reader.run(read)

    async def item_states(
        self, run_id: str, step: str, *, after: int = -1, limit: int = 1000
    ) -> list[tuple[int, ItemStatus]]:
        def read(conn: sqlite3.Connection) -> list[tuple[int, ItemStatus]]:
            args = {"run": _run_key(conn, run_id), "step": step, "after": after, "limit": limit}
            return [
                (r["idx"], ItemStatus(r["status"])) for r in conn.execute(Q["item_states"], args)
            ]

        return await self._reader.run(read)

    async def count_items(self, run_id: str, step: str) -> dict[ItemStatus, int]:
        def read(conn: sqlite3.Connection) -> dict[ItemStatus, int]:
            args = {"run": _run_key(conn, run_id), "step": step}
            return {ItemStatus(r["status"]): r["n"] for r in conn.execute(Q["count_items"], args)}

        return await self._reader.run(read)

    # --- leases and writes ------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        ttl: float,
        now: float,
        *,
        run_id: str | None = None,
        flows: Sequence[str] | None = None,
    ) -> Claimed | None:
        claimed = await self._write_thread().run(
            lambda c: ops.claim(c, owner, ttl, now, run_id, flows)
        )
        if claimed is not None:
            self._notify({claimed.run.id})
        return claimed

    async def heartbeat(
        self,
        leases: Sequence[Lease],
        ttl: float,
        now: float,
        *,
        items_of: str | None = None,
        item_tokens: Sequence[str] = (),
    ) -> dict[str, Commit]:
        return await self._write_thread().run(
            lambda c: ops.heartbeat(c, leases, ttl, now, items_of, item_tokens)
        )

    async def claim_items(
        self,
        owner: str,
        token: str,
        ttl: float,
        now: float,
        *,
        limit: int,
        run_id: str | None = None,
        step: str | None = None,
        flows: Sequence[str] | None = None,
    ) -> ClaimedItems | None:
        if run_id is None or step is None:
            # Looked for by the reader: a worker with nothing to help takes no write lock.
            found = await self._reader.run(lambda c: ops.open_map_step(c, owner, flows, now))
            if found is None:
                return None
            run_id, step = found
        lease = ItemLease(run_id, step, token, owner)
        claimed = await self._write_thread().run(
            lambda c: ops.claim_items(c, lease, ttl, now, limit=limit, named=True, flows=flows)
        )
        if claimed is not None:
            self._notify({claimed.run.id})
        return claimed

    async def release_items(self, lease: ItemLease) -> int:
        released: int = await self._write_thread().run(
            lambda c: ops.release_items(c, lease), lease.run_id
        )
        if released:
            self._queued("")  # idle workers come to claim them
        return released

    async def commit_items(self, lease: ItemLease, writes: Sequence[Write]) -> Commit:
        return await self._write_thread().run(
            lambda c: ops.commit_items(c, lease, writes), lease.run_id, group=True
        )

    async def commit(self, lease: Lease, writes: Sequence[Write]) -> Commit:
        done = await self._write_thread().run(
            lambda c: ops.commit(c, lease, writes), lease.run_id, group=True
        )
        if done.ok and any(isinstance(w, OpenItems) for w in writes):
            self._queued("")  # a map step's items are open: idle workers come to help
        return done

    async def release(self, lease: Lease, now: float) -> bool:
        flow = await self._write_thread().run(lambda c: ops.release(c, lease, now), lease.run_id)
        if flow is not None:
            self._queued(flow)
        return flow is not None

    # --- control -----------------------------------------------------------------------------

    async def retry_run(
        self, run_id: str, now: float, *, from_step: str | None = None, auto: bool = False
    ) -> Run:
        queued = await self._write_thread().run(
            lambda c: ops.retry_run(c, run_id, now, from_step=from_step, auto=auto), run_id
        )
        self._queued(queued.flow)
        return queued

    async def request_cancel(self, run_id: str, now: float) -> Run:
        return await self._write_thread().run(lambda c: ops.request_cancel(c, run_id, now), run_id)

    async def delete_run(self, run_id: str) -> None:
        await self._write_thread().run(lambda c: ops.delete_run(c, run_id), run_id)

    async def due_retries(self, now: float, flows: Sequence[str] | None = None) -> list[str]:
        args = {"now": now, "flows": None if flows is None else dumps(list(flows)), "limit": 100}
        return await self._reader.run(
            lambda c: [row["id"] for row in c.execute(Q["due_retries"], args)]
        )

    async def next_retry_at(self, flows: Sequence[str] | None = None) -> float | None:
        args = {"flows": None if flows is None else dumps(list(flows))}

        def read(conn: sqlite3.Connection) -> float | None:
            value = conn.execute(Q["next_retry_at"], args).fetchone()[0]
            return None if value is None else float(value)

        return await self._reader.run(read)

    # --- events --------------------------------------------------------------------------------

    async def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        args = {"run_id": run_id, "after": after, "limit": limit}
        return await self._reader.run(
            lambda c: [event(run_id, row) for row in c.execute(Q["read_events"], args)]
        )

    async def read_all_events(
        self, after: int = 0, limit: int = 1000, *, prefix: str | None = None
    ) -> list[Event]:
        args = {"after": after, "limit": limit, "prefix": prefix}
        return await self._reader.run(
            lambda c: [event(row["run_id"], row) for row in c.execute(Q["read_all_events"], args)]
        )

    # --- artifacts and cache ----------------------------------------------------------------------

    async def put_artifact(self, artifact: Artifact, place: Callable[[], None], now: float) -> None:
        await self._write_thread().run(lambda c: ops.put_artifact(c, artifact, place, now))

    async def get_artifact(self, sha256: str) -> Artifact | None:
        def read(conn: sqlite3.Connection) -> Artifact | None:
            row = conn.execute(Q["get_artifact"], {"sha256": sha256}).fetchone()
            return None if row is None else artifact(row)

        return await self._reader.run(read)

    async def cache_get(self, key: str, now: float) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(Q["cache_get"], {"key": key, "now": now}).fetchone()
            return None if row is None else str(row[0])

        return await self._reader.run(read)

    # --- provider health ----------------------------------------------------------------------

    async def add_health_check(self, check: HealthCheck) -> None:
        args = {
            "provider": check.provider,
            "at": check.at,
            "status": check.status,
            "latency_ms": check.latency_ms,
            "error": check.error,
            "quota_remaining": check.quota_remaining,
        }
        await self._write_thread().run(lambda c: c.execute(Q["add_health_check"], args))

    async def health_history(self, provider: str, limit: int = 100) -> list[HealthCheck]:
        args = {"provider": provider, "limit": limit}
        return await self._reader.run(
            lambda c: [health_check(row) for row in c.execute(Q["health_history"], args)]
        )

    async def latest_health(self) -> list[HealthCheck]:
        return await self._reader.run(
            lambda c: [health_check(row) for row in c.execute(Q["latest_health"])]
        )

    # --- state shared by every worker, and counters -------------------------------------------

    async def update_state(
        self, key: str, change: Callable[[str | None], tuple[str | None, T]]
    ) -> T:
        # Most updates change nothing (a closed breaker stays closed): judged on the
        # reader, they never wait behind the writer; one that changes the value is made
        # again on the writer, under the write lock.
        old = await self._reader.run(lambda c: state.get_state(c, key))
        new, result = change(old)
        if new == old:
            return result
        return await self._write_thread().run(lambda c: state.update_state(c, key, change))

    async def read_state(self, prefix: str) -> dict[str, str]:
        return await self._reader.run(lambda c: state.read_state(c, prefix))

    async def add_counts(self, counts: Sequence[Count]) -> None:
        if counts:
            await self._write_thread().run(lambda c: state.add_counts(c, counts))

    async def read_counts(self, since: float | None = None) -> dict[tuple[str, str, str], int]:
        return await self._reader.run(lambda c: state.read_counts(c, since))

    # --- retention ------------------------------------------------------------------------

    async def collect(
        self,
        *,
        checkpoints_before: float,
        runs_before: float,
        artifacts_before: float,
        now: float,
        remove_file: Callable[[str], None],
        health_checks_kept: int = 100,
        counts_before: float | None = None,
    ) -> GcCounts:
        writer = self._write_thread()
        expired, deleted, purged = await writer.run(
            lambda c: ops.expire(
                c, checkpoints_before=checkpoints_before, runs_before=runs_before, now=now
            )
        )
        removed = 0
        args = {"before": artifacts_before, "limit": 500}
        while True:
            shas = await self._reader.run(
                lambda c: [r["sha256"] for r in c.execute(Q["unreferenced_artifacts"], args)]
            )
            if not shas:
                break
            removed += await writer.run(
                functools.partial(ops.delete_artifacts, shas=shas, remove_file=remove_file)
            )
        pruned = await writer.run(
            lambda c: c.execute(Q["prune_health_checks"], {"keep": health_checks_kept}).rowcount
        )
        dropped = 0
        if counts_before is not None:
            dropped = await writer.run(
                lambda c: c.execute(Q["prune_counts"], {"before": counts_before}).rowcount
            )
        return GcCounts(expired, deleted, removed, purged, pruned, dropped)


def _run_key(conn: sqlite3.Connection, run_id: str) -> int | None:
    row = conn.execute(Q["run_key"], {"run_id": run_id}).fetchone()
    return None if row is None else int(row[0])


def _add(
    groups: dict[str, list[Callable[[str], None]]], key: str, listener: Callable[[str], None]
) -> Callable[[], None]:
    with _listeners_lock:
        groups.setdefault(key, []).append(listener)

    def remove() -> None:
        with _listeners_lock:
            group = groups.get(key, [])
            if listener in group:
                group.remove(listener)

    return remove


def _tell(groups: dict[str, list[Callable[[str], None]]], key: str, values: Iterable[str]) -> None:
    group = groups.get(key)
    if not group:
        return
    with _listeners_lock:
        listeners = list(group)
    for listener in listeners:
        for value in values:
            listener(value)
