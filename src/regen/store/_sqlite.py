"""The SQLite store: one database file, shared safely by the processes of one machine."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from regen.store import _queries
from regen.store import _sqlite_control as control
from regen.store._errors import StoreError
from regen.store._interface import Listener, Store
from regen.store._records import (
    Artifact,
    Batch,
    Claimed,
    Commit,
    EndStep,
    Event,
    GcCounts,
    Item,
    ItemStatus,
    Lease,
    NewRun,
    Run,
    RunStatus,
    Step,
)
from regen.store._sqlite_db import connect, transaction, translate
from regen.store._sqlite_rows import dumps as _dumps
from regen.store._sqlite_rows import events as _events
from regen.store._sqlite_rows import item as _item
from regen.store._sqlite_rows import overlay as _overlay
from regen.store._sqlite_rows import run as _run
from regen.store._sqlite_rows import step as _step
from regen.store._sqlite_writes import APPLY, Cursor, end_step_alone, last_seq

Q = _queries.queries("sqlite")
_CHECK_LEASE = Q["check_lease"]
_CHECK_LEASE_KEY = Q["check_lease_key"]
_OK, _CANCEL, _LOST = Commit(True), Commit(True, True), Commit(False)

# Listeners per database file, so stores opened on one file in one process wake each other.
_listeners: dict[str, list[Listener]] = {}
_listeners_lock = threading.Lock()


class SQLiteStore(Store):
    """:class:`Store` on one SQLite file (stdlib ``sqlite3``, WAL).

    One connection serves every thread of the process in turn (a lock keeps them apart);
    other processes open their own and SQLite's file locks keep them apart.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().resolve()
        self.location = f"sqlite:///{self.path}"
        self._conn: sqlite3.Connection | None = connect(self.path)
        self._conn.row_factory = sqlite3.Row
        # The commit path's own cursor (plain tuples): Connection.execute makes a cursor
        # per statement.
        self._cursor = self._conn.cursor()
        self._cursor.row_factory = None
        self._lock = threading.RLock()
        self._key = str(self.path)
        # Per held lease token: the run's number and its last event seq. While a lease
        # holds, only its holder appends to the run's log, so the next numbers are known.
        self._held: dict[str, tuple[int, int]] = {}

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.location}: the store is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise translate(exc, str(self.path)) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._read() as conn, transaction(conn):
            yield conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._cursor.close()
                self._conn.close()
                self._conn = None

    def _notify(self, run_ids: set[str]) -> None:
        group = _listeners.get(self._key)
        if not group:  # nobody listens (read without the lock: a listener added meanwhile
            return  # reads the log itself after adding itself)
        with _listeners_lock:
            listeners = list(group)
        for listener in listeners:
            for run_id in run_ids:
                listener(run_id)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        with _listeners_lock:
            _listeners.setdefault(self._key, []).append(listener)

        def remove() -> None:
            with _listeners_lock:
                group = _listeners.get(self._key, [])
                if listener in group:
                    group.remove(listener)

        return remove

    @staticmethod
    def _run_key(conn: sqlite3.Connection, run_id: str) -> int | None:
        row = conn.execute(Q["run_key"], (run_id,)).fetchone()
        return None if row is None else int(row[0])

    # --- runs -----------------------------------------------------------------------------

    def create_run(self, new: NewRun, now: float) -> tuple[Run, bool]:
        with self._write() as conn:
            cursor = conn.execute(
                Q["insert_run"],
                {
                    "id": new.id,
                    "flow": new.flow,
                    "flow_ref": new.flow_ref,
                    "business_key": new.business_key,
                    "params": new.params,
                    "steps": _dumps(new.steps),
                    "now": now,
                    "max_retries": new.max_retries,
                    "retry_delay": new.retry_delay,
                },
            )
            if cursor.rowcount == 0:
                row = conn.execute(
                    Q["find_run"], {"flow": new.flow, "business_key": new.business_key}
                ).fetchone()
                return _run(row), False
            key = int(cursor.lastrowid or 0)
            control.add_event(conn, key, "run.queued", {"flow": new.flow}, now)
            row = conn.execute(Q["get_run"], {"id": new.id}).fetchone()
        self._notify({new.id})
        return _run(row), True

    def get_run(self, run_id: str) -> Run | None:
        with self._read() as conn:
            row = conn.execute(Q["get_run"], {"id": run_id}).fetchone()
        return None if row is None else _run(row)

    def find_run(self, flow: str, business_key: str) -> Run | None:
        with self._read() as conn:
            row = conn.execute(
                Q["find_run"], {"flow": flow, "business_key": business_key}
            ).fetchone()
        return None if row is None else _run(row)

    def list_runs(
        self,
        *,
        statuses: Sequence[RunStatus] | None = None,
        flow: str | None = None,
        before: float | None = None,
        limit: int = 50,
    ) -> list[Run]:
        wanted = None if statuses is None else _dumps([str(s) for s in statuses])
        with self._read() as conn:
            rows = conn.execute(
                Q["list_runs"], {"statuses": wanted, "flow": flow, "before": before, "limit": limit}
            ).fetchall()
        return [_run(row) for row in rows]

    def get_steps(self, run_id: str) -> list[Step]:
        with self._read() as conn:
            key = self._run_key(conn, run_id)
            if key is None:
                return []
            rows = self._tuples(Q["get_steps"], (run_id, key))
            tail = conn.execute(Q["unprojected_rows"], (key,)).fetchall()
        return _overlay([_step(row) for row in rows], tail)

    def step_names(self, run_id: str) -> list[tuple[str, str]]:
        with self._read() as conn:
            key = self._run_key(conn, run_id)
            rows = [] if key is None else self._tuples(Q["step_names"], (key,))
        return [(name, kind) for name, kind in json.loads(rows[0][0])] if rows else []

    def _tuples(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        """Rows as plain tuples, on the commit cursor (the lock held, no transaction open)."""
        rows: list[tuple[Any, ...]] = self._cursor.execute(sql, params).fetchall()
        return rows

    def get_items(
        self,
        run_id: str,
        step: str,
        *,
        after: int = -1,
        limit: int = 1000,
        status: ItemStatus | None = None,
    ) -> list[Item]:
        with self._read() as conn:
            rows = conn.execute(
                Q["get_items"],
                {
                    "run_id": run_id,
                    "step": step,
                    "after": after,
                    "limit": limit,
                    "status": None if status is None else str(status),
                },
            ).fetchall()
        return [_item(row) for row in rows]

    def item_states(
        self, run_id: str, step: str, *, after: int = -1, limit: int = 1000
    ) -> list[tuple[int, ItemStatus]]:
        with self._read() as conn:
            rows = conn.execute(
                Q["item_states"], {"run_id": run_id, "step": step, "after": after, "limit": limit}
            ).fetchall()
        return [(row[0], ItemStatus(row[1])) for row in rows]

    def count_items(self, run_id: str, step: str) -> dict[ItemStatus, int]:
        with self._read() as conn:
            rows = conn.execute(Q["count_items"], {"run_id": run_id, "step": step}).fetchall()
        return {ItemStatus(row[0]): row[1] for row in rows}

    # --- leases and writes ------------------------------------------------------------------

    def claim(
        self,
        owner: str,
        ttl: float,
        now: float,
        *,
        run_id: str | None = None,
        flows: Sequence[str] | None = None,
    ) -> Claimed | None:
        wanted = None if flows is None else _dumps(list(flows))
        # A named run is looked up by its id (the general query scans the queue).
        query = Q["claim_candidate"] if run_id is None else Q["claim_named"]
        with self._write() as conn:
            row = conn.execute(query, {"run_id": run_id, "flows": wanted, "now": now}).fetchone()
            if row is None:
                return None
            token = uuid.uuid4().hex
            taken_over = row["status"] == RunStatus.RUNNING
            conn.execute(
                Q["claim_run"],
                {
                    "id": row["id"],
                    "owner": owner,
                    "token": token,
                    "expires_at": now + ttl,
                    "now": now,
                },
            )
            run, key = control.locked_run(conn, row["id"])
            control.add_event(
                conn, key, "run.started", {"execution": run.executions, "resumed": taken_over}, now
            )
            self._held[token] = (key, last_seq(conn, key))
        self._notify({run.id})
        return Claimed(run, Lease(run.id, token, owner, now + ttl), taken_over)

    def heartbeat(self, leases: Sequence[Lease], ttl: float, now: float) -> dict[str, Commit]:
        outcome: dict[str, Commit] = {}
        with self._write() as conn:
            for lease in leases:
                row = conn.execute(
                    Q["heartbeat"],
                    {"run_id": lease.run_id, "token": lease.token, "expires_at": now + ttl},
                ).fetchone()
                outcome[lease.run_id] = Commit(False) if row is None else Commit(True, bool(row[0]))
        return outcome

    def commit(self, batches: Sequence[Batch]) -> list[Commit]:
        # The hot path of every checkpoint: written out, without the context managers.
        results: list[Commit] = []
        touched: set[str] = set()
        held = self._held
        done: dict[str, tuple[int, int] | None] = {}
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.location}: the store is closed")
            conn = self._cursor
            execute = conn.execute
            if len(batches) == 1 and self._alone(batches[0]):
                return [_OK]
            try:
                execute("BEGIN IMMEDIATE")
                try:
                    for batch in batches:
                        lease = batch.lease
                        token = lease.token
                        known = done.get(token) or held.get(token)
                        if known is not None:
                            row = execute(_CHECK_LEASE_KEY, (known[0], token)).fetchone()
                            cursor = Cursor(lease.run_id, known[0], known[1])
                        else:
                            row = execute(_CHECK_LEASE, (lease.run_id, token)).fetchone()
                            if row is not None:
                                cursor = Cursor(lease.run_id, row[0], last_seq(conn, row[0]))
                                row = (row[1],)
                        if row is None:
                            done[token] = None
                            results.append(_LOST)
                            continue
                        for write in batch.writes:
                            APPLY[type(write)](conn, cursor, write)
                        if batch.writes:
                            touched.add(lease.run_id)
                        done[token] = None if cursor.ended else (cursor.key, cursor.seq)
                        results.append(_CANCEL if row[0] else _OK)
                except BaseException:
                    if self._conn.in_transaction:
                        execute("ROLLBACK")
                    raise
                execute("COMMIT")
            except sqlite3.Error as exc:
                raise translate(exc, str(self.path)) from exc
            for token, known in done.items():
                if known is None:
                    held.pop(token, None)
                else:
                    held[token] = known
        if touched:
            self._notify(touched)
        return results

    def _alone(self, batch: Batch) -> bool:
        """The quickest commit: a run's lone step transition (a flow of quick steps), one
        guarded statement; ``False`` if it was not written (the general path then runs,
        checking the lease and the cancellation flag)."""
        writes = batch.writes
        if len(writes) != 1 or type(writes[0]) is not EndStep or not writes[0].lazy:
            return False
        token = batch.lease.token
        known = self._held.get(token)
        if known is None:
            return False
        key = known[0]
        try:
            seq = end_step_alone(self._cursor, key, known[1], writes[0], token)
        except sqlite3.Error as exc:
            raise translate(exc, str(self.path)) from exc
        if not seq:
            return False
        self._held[token] = (key, seq)
        if _listeners.get(self._key):
            self._notify({batch.lease.run_id})
        return True

    def release(self, lease: Lease, now: float) -> bool:
        with self._write() as conn:
            done = conn.execute(
                Q["release_run"], {"run_id": lease.run_id, "token": lease.token, "now": now}
            ).rowcount
            self._held.pop(lease.token, None)
            if done:
                _, key = control.locked_run(conn, lease.run_id)
                control.add_event(conn, key, "run.queued", {"reason": "released"}, now)
        if done:
            self._notify({lease.run_id})
        return bool(done)

    # --- control -----------------------------------------------------------------------------

    def retry_run(
        self, run_id: str, now: float, *, from_step: str | None = None, auto: bool = False
    ) -> Run:
        with self._write() as conn:
            run = control.retry_run(conn, run_id, now, from_step=from_step, auto=auto)
        self._notify({run_id})
        return run

    def request_cancel(self, run_id: str, now: float) -> Run:
        with self._write() as conn:
            run = control.request_cancel(conn, run_id, now)
        self._notify({run_id})
        return run

    def due_retries(self, now: float, flows: Sequence[str] | None = None) -> list[str]:
        wanted = None if flows is None else _dumps(list(flows))
        with self._read() as conn:
            rows = conn.execute(
                Q["due_retries"], {"now": now, "flows": wanted, "limit": 100}
            ).fetchall()
        return [row[0] for row in rows]

    def next_retry_at(self, flows: Sequence[str] | None = None) -> float | None:
        wanted = None if flows is None else _dumps(list(flows))
        with self._read() as conn:
            value = conn.execute(Q["next_retry_at"], {"flows": wanted}).fetchone()[0]
        return None if value is None else float(value)

    # --- events --------------------------------------------------------------------------------

    def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        with self._read() as conn:
            # One more row than asked: the first may stand only for events up to ``after``.
            rows = conn.execute(
                Q["read_events"], {"run_id": run_id, "after": after, "limit": limit + 1}
            ).fetchall()
            names: dict[int, tuple[str, str]] = {}
            if any(row[4] is not None for row in rows):
                key = self._run_key(conn, run_id)
                declared = conn.execute(Q["step_names"], (key,)).fetchone()[0]
                names = {i: (name, kind) for i, (name, kind) in enumerate(json.loads(declared))}
        return _events(run_id, rows, names, after, limit)

    # --- artifacts and cache ----------------------------------------------------------------------

    def put_artifact(self, artifact: Artifact, place: Callable[[], None], now: float) -> None:
        with self._write() as conn:
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

    def get_artifact(self, sha256: str) -> Artifact | None:
        with self._read() as conn:
            row = conn.execute(Q["get_artifact"], {"sha256": sha256}).fetchone()
        if row is None:
            return None
        return Artifact(
            row["sha256"],
            row["size"],
            row["content_type"],
            row["width"],
            row["height"],
            row["created_at"],
        )

    def cache_get(self, key: str, now: float) -> str | None:
        with self._read() as conn:
            row = conn.execute(Q["cache_get"], {"key": key, "now": now}).fetchone()
        return None if row is None else str(row[0])

    # --- retention ------------------------------------------------------------------------

    def collect(
        self,
        *,
        checkpoints_before: float,
        runs_before: float,
        artifacts_before: float,
        now: float,
        remove_file: Callable[[str], None],
    ) -> GcCounts:
        with self._write() as conn:
            expired, deleted, purged = control.expire(
                conn, checkpoints_before=checkpoints_before, runs_before=runs_before, now=now
            )
        removed = 0
        while True:
            with self._read() as conn:
                shas = [
                    r[0]
                    for r in conn.execute(
                        Q["unreferenced_artifacts"], {"before": artifacts_before, "limit": 500}
                    )
                ]
            if not shas:
                break
            with self._write() as conn:
                removed += control.delete_artifacts(conn, shas, remove_file)
        return GcCounts(expired, deleted, removed, purged)
