"""The PostgreSQL store: one database shared by workers on many machines."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from regen.foundation import env_float, env_int
from regen.store import _postgres_ops as ops
from regen.store import _postgres_state as state
from regen.store import _queries
from regen.store._errors import RunNotFound, StoreError
from regen.store._interface import Listener, QueueListener, Store
from regen.store._location import auto_upgrade
from regen.store._postgres_db import masked, migrate, problems, translate
from regen.store._postgres_direct import LoopConnections
from regen.store._postgres_listen import Listeners
from regen.store._postgres_loop import LoopThread
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
from regen.store._sqlite_rows import artifact, event, health_check, item, run, step

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    Conn = AsyncConnection[dict[str, Any]]

Q = _queries.queries("postgres")
T = TypeVar("T")
logger = logging.getLogger("regen.store")
#: How long opening waits for the server before giving up (seconds).
OPEN_TIMEOUT = 10.0
#: How long a call waits for an unreachable database to come back before failing
#: (seconds; ``REGEN_POSTGRES_RECONNECT_S``).
RECONNECT_WAIT = 60.0


class PostgresStore(Store):
    """:class:`Store` on a PostgreSQL database (psycopg 3, a pool of connections).

    The pool lives on an event loop in a thread of the store's own (psycopg's async
    connections belong to one loop; the engine awaits the store from several), and each
    call is handed to it. Claims use ``FOR UPDATE SKIP LOCKED``; every write checks the
    run's lease token under the run's row lock. Commits that append events send a
    ``NOTIFY`` with the run id, heard by the stores of every process that listens.
    ``upgrade``: bring an older schema up to date (default: ``REGEN_DB_AUTO_UPGRADE``);
    ``pool_size``: connections at most (default: ``REGEN_POSTGRES_POOL_SIZE``, 10). A call
    whose database cannot be reached is tried again for ``REGEN_POSTGRES_RECONNECT_S``
    (60 s), then fails with :class:`DatabaseUnreachable`.
    """

    def __init__(
        self, url: str, *, upgrade: bool | None = None, pool_size: int | None = None
    ) -> None:
        try:
            import psycopg  # noqa: PLC0415, F401 - the driver is an optional extra
            import psycopg_pool  # noqa: PLC0415, F401
        except ImportError as exc:
            raise StoreError(
                "the PostgreSQL store needs psycopg and psycopg-pool: pip install 'regen[postgres]'"
            ) from exc
        size = (
            env_int("REGEN_POSTGRES_POOL_SIZE", 10, minimum=1) if pool_size is None else pool_size
        )
        self._reconnect_wait = env_float("REGEN_POSTGRES_RECONNECT_S", RECONNECT_WAIT, minimum=0)
        self._url = url  # never shown: it may hold the password
        self.location = masked(url)
        self._thread = LoopThread("regen-postgres")
        self._listeners = Listeners(url, self.location, self._thread.loop)
        #: Set while the store listens for other processes' notifications.
        self.listening = self._listeners.listening
        self._direct = LoopConnections(
            url, self._listeners.own_pids.add, self._listeners.own_pids.discard
        )
        try:
            self._pool: AsyncConnectionPool[Conn] = self._thread.wait(
                self._open(upgrade=auto_upgrade() if upgrade is None else upgrade, size=size)
            )
        except BaseException:
            self._thread.stop()
            raise
        _left_open.add(self)

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"

    # --- plumbing ---------------------------------------------------------------------------

    async def _open(self, *, upgrade: bool, size: int) -> AsyncConnectionPool[Conn]:
        from psycopg import AsyncConnection  # noqa: PLC0415
        from psycopg.rows import dict_row  # noqa: PLC0415
        from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415

        try:
            conn = await AsyncConnection.connect(self._url, autocommit=True, connect_timeout=10)
        except Exception as exc:
            raise translate(exc, self.location, self._url) from exc
        try:
            await migrate(conn, self.location, upgrade=upgrade)
        except StoreError:
            raise
        except Exception as exc:
            raise translate(exc, self.location, self._url) from exc
        finally:
            await conn.close()

        async def configure(new: AsyncConnection[Any]) -> None:
            # Notifications sent by this store's own commits are delivered to its
            # listeners at once; the listening connection skips them.
            self._listeners.own_pids.add(new.info.backend_pid)

        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=size,
            # Autocommit: a single statement is its own transaction (one round trip, no
            # BEGIN and COMMIT of its own); work of several statements opens one.
            kwargs={"row_factory": dict_row, "connect_timeout": 10, "autocommit": True},
            configure=configure,
            open=False,
            name="regen",
        )
        try:
            await pool.open(wait=True, timeout=OPEN_TIMEOUT)
        except Exception as exc:
            await pool.close()
            raise translate(exc, self.location, self._url) from exc
        return pool

    async def _call(
        self,
        work: Callable[[Conn], Coroutine[Any, Any, T]],
        *runs: str,
        single: bool = False,
        landed: Callable[[Conn], Coroutine[Any, Any, T | None]] | None = None,
        direct: bool = False,
        pipeline: bool = False,
    ) -> T:
        """Run ``work(conn)`` (on the store's loop unless ``direct``); tell this store's
        listeners of the runs it wrote to once it has committed. ``single``: ``work`` is
        one statement, its own transaction (one round trip), and safe to send again should
        its answer be lost; otherwise it runs in a transaction of its own. ``landed``:
        tells whether ``work`` took effect when the connection was lost before its answer
        came (its outcome), or not (``None``: it is sent again). ``direct``: a ``single``
        statement that a loop sending many may send on a connection of its own (see
        :class:`LoopConnections`). ``pipeline``: a transaction whose statements are sent
        without waiting for each answer (until a row is read)."""
        if direct and single and self._direct.take():
            try:
                result = await self._transaction(work, single, landed, direct=True)
            finally:
                self._direct.give_back()
        else:
            result = await self._thread.run(
                self._transaction(work, single, landed, pipeline=pipeline)
            )
        if runs:
            self._listeners.notify(runs)
        return result

    async def _transaction(
        self,
        work: Callable[[Conn], Coroutine[Any, Any, T]],
        single: bool,
        landed: Callable[[Conn], Coroutine[Any, Any, T | None]] | None,
        *,
        direct: bool = False,
        pipeline: bool = False,
    ) -> T:
        """``work`` on a connection of the pool (``direct``: the running loop's own), tried
        again on a new one while the database cannot be reached (a restart, a network
        cut: weather). A connection lost during a ``COMMIT`` leaves its outcome unknown:
        ``landed`` tells it once connected again (without it, that is an error, unless
        ``work`` is a ``single`` statement, which is safe to send again)."""
        import psycopg  # noqa: PLC0415

        deadline = time.monotonic() + self._reconnect_wait
        delay = 0.05
        unsure = False
        while True:
            committing = False
            try:
                wait = max(deadline - time.monotonic(), 0.1)  # for a connection
                connection = (
                    self._direct.connection(wait) if direct else self._pool.connection(wait)
                )
                async with connection as conn:
                    if unsure and landed is not None:
                        outcome = await landed(conn)
                        if outcome is not None:
                            return outcome
                        unsure = False
                    if single:
                        committing = True  # sent: it may commit before its answer comes
                        return await work(conn)
                    if pipeline:
                        async with conn.pipeline(), conn.transaction():
                            result = await work(conn)
                            committing = True  # the COMMIT goes as the blocks end
                        return result
                    async with conn.transaction():
                        result = await work(conn)
                        committing = True  # the COMMIT goes as the block ends
                return result
            except StoreError:
                raise
            except psycopg.OperationalError as exc:
                repeatable = single or landed is not None
                if (committing and not repeatable) or time.monotonic() > deadline:
                    raise translate(exc, self.location, self._url) from exc
                unsure = unsure or committing
                logger.warning(
                    "regen: the PostgreSQL connection failed; trying again",
                    extra={"database": self.location, "error": str(exc).strip()},
                )
            except psycopg.Error as exc:
                raise translate(exc, self.location, self._url) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            if not direct:
                with contextlib.suppress(Exception):
                    await self._pool.check()  # drop the other connections that were lost

    async def _rows(self, query: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        if any(_unstorable(value) for value in args.values()):
            return []  # no row holds that text: nothing matches, as in SQLite
        args = {k: _storable(v) if isinstance(v, list) else v for k, v in args.items()}

        async def read(conn: Conn) -> list[dict[str, Any]]:
            cursor = await conn.execute(query, args)
            return await cursor.fetchall()

        return await self._call(read, single=True, direct=True)

    async def _row(self, query: str, args: dict[str, Any]) -> dict[str, Any] | None:
        rows = await self._rows(query, args)
        return rows[0] if rows else None

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """:meth:`close`, from synchronous code (any thread)."""
        _left_open.discard(self)
        if not self._thread.alive:
            return
        try:
            self._thread.wait(self._close(), timeout=15)
        finally:
            self._thread.stop()

    async def _close(self) -> None:
        self._direct.close()
        self._listeners.stop()
        await self._pool.close()

    async def check(self) -> list[str]:
        async def read(conn: Conn) -> list[str]:
            return await problems(conn, self.location)

        return await self._call(read)

    # --- listeners ---------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def add_queue_listener(self, listener: QueueListener) -> Callable[[], None]:
        return self._listeners.add_queue(listener)

    # --- runs -----------------------------------------------------------------------------

    async def create_run(self, new: NewRun, now: float) -> tuple[Run, bool]:
        made, created = await self._call(
            lambda c: ops.create_run(c, new, now), new.id, single=True, direct=True
        )
        if created:
            self._listeners.queued((made.flow,))
        return made, created

    async def get_run(self, run_id: str) -> Run | None:
        row = await self._row(Q["get_run"], {"id": run_id})
        return None if row is None else run(row)

    async def find_run(self, flow: str, business_key: str) -> Run | None:
        row = await self._row(Q["find_run"], {"flow": flow, "business_key": business_key})
        return None if row is None else run(row)

    async def list_runs(
        self,
        *,
        statuses: Sequence[RunStatus] | None = None,
        flow: str | None = None,
        before: float | None = None,
        limit: int = 50,
        id_prefix: str | None = None,
    ) -> list[Run]:
        args = {
            "statuses": None if statuses is None else [str(s) for s in statuses],
            "flow": flow,
            "before": before,
            "limit": limit,
            "id_prefix": id_prefix,
        }
        return [run(row) for row in await self._rows(Q["list_runs"], args)]

    async def get_steps(self, run_id: str) -> list[Step]:
        return [step(run_id, row) for row in await self._rows(Q["get_steps"], {"run_id": run_id})]

    async def get_items(
        self,
        run_id: str,
        step: str,
        *,
        after: int = -1,
        limit: int = 1000,
        status: ItemStatus | None = None,
    ) -> list[Item]:
        args = {
            "run_id": run_id,
            "step": step,
            "after": after,
            "limit": limit,
            "status": None if status is None else str(status),
        }
        return [item(run_id, row) for row in await self._rows(Q["get_items"], args)]

    async def item_states(
        self, run_id: str, step: str, *, after: int = -1, limit: int = 1000
    ) -> list[tuple[int, ItemStatus]]:
        args = {"run_id": run_id, "step": step, "after": after, "limit": limit}
        rows = await self._rows(Q["item_states"], args)
        return [(r["idx"], ItemStatus(r["status"])) for r in rows]

    async def count_items(self, run_id: str, step: str) -> dict[ItemStatus, int]:
        rows = await self._rows(Q["count_items"], {"run_id": run_id, "step": step})
        return {ItemStatus(r["status"]): int(r["n"]) for r in rows}

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
        token = ops.new_token()
        claimed = await self._call(
            lambda c: ops.claim(c, owner, token, ttl, now, run_id, flows),
            single=True,
            landed=lambda c: ops.claimed(c, owner, token, ttl, now),
            direct=True,
        )
        if claimed is not None:
            self._listeners.notify((claimed.run.id,))
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
        if not leases and not item_tokens:
            return {}
        return await self._call(
            lambda c: ops.heartbeat(c, leases, ttl, now, items_of, item_tokens), single=True
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
        named = run_id is not None and step is not None
        lease = ItemLease(run_id or "", step or "", token, owner)
        # Several statements: a transaction of their own on the autocommit connection. A
        # COMMIT whose answer is lost is told apart by the token, the caller's own for this
        # claim: the items leased under it are what the claim took.
        claimed = await self._call(
            lambda c: ops.claim_items(c, lease, ttl, now, limit=limit, named=named, flows=flows),
            landed=lambda c: ops.claimed_items(c, lease),
            pipeline=True,
        )
        if claimed is not None:
            self._listeners.notify((claimed.run.id,))
        return claimed

    async def release_items(self, lease: ItemLease) -> int:
        released = await self._call(lambda c: ops.release_items(c, lease), lease.run_id)
        if released:
            self._listeners.queued(("",))  # this process's idle workers too
        return released

    async def commit_items(self, lease: ItemLease, writes: Sequence[Write]) -> Commit:
        # One statement, in a transaction so that its answer (the run's event numbers) is
        # read before the COMMIT is sent: a COMMIT whose answer is lost is then told apart.
        # Pipelined: BEGIN goes with the statement (two round trips in all).
        sent = ops.Sent()
        return await self._call(
            lambda c: ops.commit_items(c, lease, writes, sent),
            lease.run_id,
            landed=lambda c: ops.landed(c, lease, sent),
            pipeline=True,
        )

    async def commit(self, lease: Lease, writes: Sequence[Write]) -> Commit:
        name = ops.new_token()
        done = await self._call(
            lambda c: ops.commit(c, lease, writes, name), lease.run_id, single=True, direct=True
        )
        if done.ok and any(isinstance(w, OpenItems) for w in writes):
            # A map step's items are open: this process's idle workers come to help (other
            # processes hear regen_queue, sent by regen_apply).
            self._listeners.queued(("",))
        return done

    async def release(self, lease: Lease, now: float) -> bool:
        flow = await self._call(lambda c: ops.release(c, lease, now), lease.run_id)
        if flow is not None:
            self._listeners.queued((flow,))
        return flow is not None

    # --- control -----------------------------------------------------------------------------

    async def retry_run(
        self, run_id: str, now: float, *, from_step: str | None = None, auto: bool = False
    ) -> Run:
        _known(run_id)
        queued = await self._call(
            lambda c: ops.retry_run(c, run_id, now, from_step=from_step, auto=auto), run_id
        )
        self._listeners.queued((queued.flow,))
        return queued

    async def request_cancel(self, run_id: str, now: float) -> Run:
        _known(run_id)
        return await self._call(lambda c: ops.request_cancel(c, run_id, now), run_id)

    async def delete_run(self, run_id: str) -> None:
        _known(run_id)
        await self._call(lambda c: ops.delete_run(c, run_id), run_id)

    async def due_retries(self, now: float, flows: Sequence[str] | None = None) -> list[str]:
        args = {"now": now, "flows": None if flows is None else list(flows), "limit": 100}
        return [row["id"] for row in await self._rows(Q["due_retries"], args)]

    async def next_retry_at(self, flows: Sequence[str] | None = None) -> float | None:
        row = await self._row(Q["next_retry_at"], {"flows": None if flows is None else list(flows)})
        value = None if row is None else row["min"]
        return None if value is None else float(value)

    # --- events --------------------------------------------------------------------------------

    async def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        args = {"run_id": run_id, "after": after, "limit": limit}
        return [event(run_id, row) for row in await self._rows(Q["read_events"], args)]

    async def read_all_events(
        self, after: int = 0, limit: int = 1000, *, prefix: str | None = None
    ) -> list[Event]:
        args = {"after": after, "limit": limit, "prefix": prefix}
        return [event(row["run_id"], row) for row in await self._rows(Q["read_all_events"], args)]

    # --- artifacts and cache ----------------------------------------------------------------------

    async def put_artifact(self, artifact: Artifact, place: Callable[[], None], now: float) -> None:
        # ``place`` moves a file: done off the store's loop would need a second hop, and it
        # must happen inside the transaction; it is short (a rename).
        await self._call(lambda c: ops.put_artifact(c, artifact, place, now))

    async def get_artifact(self, sha256: str) -> Artifact | None:
        row = await self._row(Q["get_artifact"], {"sha256": sha256})
        return None if row is None else artifact(row)

    async def cache_get(self, key: str, now: float) -> str | None:
        row = await self._row(Q["cache_get"], {"key": key, "now": now})
        return None if row is None else str(row["value"])

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
        await self._rows_written(Q["add_health_check"], args)

    async def health_history(self, provider: str, limit: int = 100) -> list[HealthCheck]:
        args = {"provider": provider, "limit": limit}
        return [health_check(row) for row in await self._rows(Q["health_history"], args)]

    async def latest_health(self) -> list[HealthCheck]:
        return [health_check(row) for row in await self._rows(Q["latest_health"], {})]

    # --- state shared by every worker, and counters -------------------------------------------

    async def update_state(
        self, key: str, change: Callable[[str | None], tuple[str | None, T]]
    ) -> T:
        return await self._call(lambda c: state.update_state(c, key, change))

    async def read_state(self, prefix: str) -> dict[str, str]:
        return await self._call(lambda c: state.read_state(c, prefix), single=True)

    async def add_counts(self, counts: Sequence[Count]) -> None:
        if counts:
            await self._call(lambda c: state.add_counts(c, counts))

    async def read_counts(self, since: float | None = None) -> dict[tuple[str, str, str], int]:
        return await self._call(lambda c: state.read_counts(c, since), single=True)

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
        expired, deleted, purged = await self._call(
            lambda c: ops.expire(
                c, checkpoints_before=checkpoints_before, runs_before=runs_before, now=now
            )
        )
        removed = 0
        args = {"before": artifacts_before, "limit": 500}
        while True:
            shas = [r["sha256"] for r in await self._rows(Q["unreferenced_artifacts"], args)]
            if not shas:
                break
            gone = await self._call(functools.partial(_delete, shas=shas, remove=remove_file))
            removed += gone
            if not gone:
                break  # each was referenced again meanwhile
        pruned = await self._rows_written(Q["prune_health_checks"], {"keep": health_checks_kept})
        dropped = 0
        if counts_before is not None:
            dropped = await self._rows_written(Q["prune_counts"], {"before": counts_before})
        return GcCounts(expired, deleted, removed, purged, pruned, dropped)

    async def _rows_written(self, query: str, args: dict[str, Any]) -> int:
        async def write(conn: Conn) -> int:
            return (await conn.execute(query, args)).rowcount

        # Sent again after a lost answer: an insert of a health check may then be kept
        # twice (harmless); the deletes are the same whether done once or twice.
        return await self._call(write, single=True)


def _unstorable(value: Any) -> bool:
    """Text PostgreSQL cannot hold (it has a NUL character): no row can equal it."""
    return isinstance(value, str) and "\x00" in value


def _storable(values: list[Any]) -> list[Any]:
    """A list argument without the text no row can equal (``flow = ANY(…)`` alike)."""
    return [v for v in values if not _unstorable(v)]


def _known(run_id: str) -> None:
    """:class:`RunNotFound` for an id no run can have, as SQLite finds none."""
    if _unstorable(run_id):
        raise RunNotFound(run_id)


async def _delete(conn: Conn, *, shas: list[str], remove: Callable[[str], None]) -> int:
    return await ops.delete_artifacts(conn, shas, remove)


#: Stores not closed yet. One still open when the interpreter exits is closed then: its
#: pool's tasks would otherwise be destroyed pending, each printing a warning.
_left_open: weakref.WeakSet[PostgresStore] = weakref.WeakSet()


@atexit.register
def _close_left_open() -> None:
    for store in list(_left_open):
        with contextlib.suppress(Exception):
            store.close_now()
