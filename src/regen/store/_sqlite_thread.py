"""A thread that owns one SQLite connection and runs the store's work on it, in order.

The store's coroutines hand their work to a thread like this and await the result, so the
event loop never waits on the database. The writer's thread commits the runs' writes that
queued up while it was busy in one transaction (group commit: one journal write for many
checkpoints), and waits out another process's write lock instead of failing.

Neither connection waits inside SQLite (``busy_timeout=0``): work that meets another
process's lock fails at once and the thread tries again with backoff, so the waiting
happens in one place. That makes one shortcut possible: when a thread is idle (nothing
queued, its connection free) the work is tried on the caller's thread at once, on the same
connection. It is a few dozen microseconds, against two thread hand-overs that cost about
as much again each; if the database is locked, it goes to the thread and waits there as
any other work.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import sqlite3
import threading
import time
import typing
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from regen.store._errors import CorruptDatabase, StoreBusy, StoreError
from regen.store._sqlite_db import translate

logger = logging.getLogger("regen.store")
T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
#: How many queued transactions one group commit takes at most.
_GROUP = 256
#: The writer's pauses between tries while another process holds the lock: from the
#: first to the longest, so a lock released is noticed within the longest.
_FIRST_PAUSE = 0.002
_LONGEST_PAUSE = 0.05
#: Database files found damaged in this process: every later use of one is refused.
_damaged: dict[str, CorruptDatabase] = {}


class _Job:
    __slots__ = ("future", "group", "runs", "work")

    def __init__(self, work: Work, group: bool, runs: tuple[str, ...]) -> None:
        self.work = work
        self.group = group
        self.runs = runs
        self.future: Future[Any] = Future()  # settled by the thread, if it gets the job


class SQLiteThread:
    """Runs functions of a connection on a thread of its own.

    ``write``: each job runs in a transaction of its own, consecutive
    ``group`` jobs in one; a lock held by another process is waited for up to
    ``busy_wait`` seconds in all. ``changed(run_ids)`` is called after a write that touched
    those runs commits.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        where: str,
        *,
        write: bool,
        busy_wait: float = 300.0,
        changed: Callable[[set[str]], None] | None = None,
    ) -> None:
        self._connect = connect
        self._where = where
        self._write = write
        self._busy_wait = busy_wait
        self._changed = changed
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready: Future[None] = Future()
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        #: Held while the connection is in use (by the thread, or by a caller's shortcut).
        self._busy = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.result()  # the connection's errors are raised here, in the caller

    async def run(
        self, work: Callable[[sqlite3.Connection], T], *runs: str, group: bool = False
    ) -> T:
        """Run ``work(conn)`` on the thread (in a transaction if this is the writer), or here
        and now when the thread is idle and no lock is in the way."""
        if self._closed:
            raise StoreError(f"{self._where}: the store is closed")
        if self._jobs.empty() and self._busy.acquire(blocking=False):
            try:
                done, now = self._here(work, runs)
            finally:
                self._busy.release()
            if done:
                return typing.cast("T", now)
        job = _Job(work, group, runs)
        self._jobs.put(job)
        result: T = await asyncio.wrap_future(job.future)
        return result

    def close(self) -> None:
        """Finish the queued jobs, close the connection and stop the thread."""
        self._closed = True
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    # --- on the thread ------------------------------------------------------------------------

    def _here(self, work: Work, runs: tuple[str, ...]) -> tuple[bool, Any]:
        """Run ``work`` on the caller's thread if no lock is in the way: ``(True, result)``;
        ``(False, None)`` when the database is busy (the thread then waits)."""
        conn = self._conn
        if conn is None or _damaged.get(self._where) is not None:
            return False, None
        try:
            result = self._transaction(conn, [work])[0] if self._write else work(conn)
        except sqlite3.Error as exc:
            error = translate(exc, self._where)
            if isinstance(error, StoreBusy):
                return False, None
            if isinstance(error, CorruptDatabase):
                _damaged.setdefault(self._where, error)
            raise error from exc
        self._notify(runs)
        return True, result

    def _main(self) -> None:
        try:
            conn = self._conn = self._connect()
            conn.execute("PRAGMA busy_timeout=0")  # the thread waits, not SQLite
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                jobs = [job]
                while job.group and len(jobs) < _GROUP:
                    try:
                        following = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if following is None:
                        self._jobs.put(None)  # stop after this batch
                        break
                    jobs.append(following)
                    if not following.group:
                        break
                # A job whose caller stopped waiting (its task was cancelled) is dropped;
                # once running, it can no longer be cancelled and is seen through.
                jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
                if jobs:
                    with self._busy:
                        self._serve(conn, jobs)
        finally:
            with self._busy:
                self._conn = None
                conn.close()

    def _serve(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        if not self._write:
            for job in jobs:
                self._settle(job, *self._attempt(functools.partial(job.work, conn)))
            return
        grouped = [j for j in jobs if j.group]
        rest = [j for j in jobs if not j.group]
        if len(grouped) > 1:
            ok, outcome = self._attempt(
                lambda: self._transaction(conn, [job.work for job in grouped])
            )
            if ok:
                for job, result in zip(grouped, outcome, strict=True):
                    self._settle(job, True, result)
                self._notify(*(job.runs for job in grouped))
            else:  # one of them failed: each alone, so only that one fails
                rest = grouped + rest
        else:
            rest = grouped + rest
        for job in rest:
            ok, outcome = self._attempt(functools.partial(self._alone, conn, job))
            self._settle(job, ok, outcome)
            if ok:
                self._notify(job.runs)

    def _alone(self, conn: sqlite3.Connection, job: _Job) -> Any:
        return self._transaction(conn, [job.work])[0]

    def _transaction(self, conn: sqlite3.Connection, works: list[Work]) -> list[Any]:
        # A deferred BEGIN: the write lock is taken by the first write. If another process
        # holds it, or committed since this transaction's first read, that write fails as
        # busy and the whole transaction is tried again (see _attempt), reading afresh, so
        # a read-then-write stays atomic. Taking the lock up front (BEGIN IMMEDIATE) costs
        # about 8 µs more per commit here, some 5% of a step's checkpoint.
        conn.execute("BEGIN")
        try:
            results = [work(conn) for work in works]
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return results

    def _attempt(self, call: Callable[[], Any]) -> tuple[bool, Any]:
        """``call()`` with another process's lock waited out: ``(ok, result or error)``."""
        damage = _damaged.get(self._where)
        if damage is not None:
            return False, damage
        deadline = time.monotonic() + self._busy_wait
        pause = _FIRST_PAUSE
        while True:
            try:
                return True, call()
            except sqlite3.Error as exc:
                error = translate(exc, self._where)
            except Exception as exc:
                return False, exc
            if isinstance(error, CorruptDatabase):
                _damaged.setdefault(self._where, error)
                logger.error("regen: %s; writes to it are stopped", error)
                return False, error
            if not isinstance(error, StoreBusy):
                return False, error
            if time.monotonic() >= deadline:
                return False, StoreBusy(
                    f"{self._where}: the database stayed locked by another process "
                    f"for {self._busy_wait:g}s; find the process holding it (`fuser` on the "
                    "database file shows it)"
                )
            if pause == _FIRST_PAUSE:
                logger.info(
                    "regen: the database is locked by another process; waiting",
                    extra={"where": self._where},
                )
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    @staticmethod
    def _settle(job: _Job, ok: bool, outcome: Any) -> None:
        if ok:
            job.future.set_result(outcome)
        else:
            job.future.set_exception(
                outcome if isinstance(outcome, BaseException) else StoreError(str(outcome))
            )

    def _notify(self, *runs: tuple[str, ...]) -> None:
        if self._changed is None:
            return
        changed = {run for group in runs for run in group}
        if changed:
            try:
                self._changed(changed)
            except Exception:
                logger.warning("regen: a store listener failed", exc_info=True)
