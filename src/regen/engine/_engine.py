"""The engine: start, execute, retry, cancel, inspect and follow runs; clean up; work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from regen.engine import _faults, _time
from regen.engine._artifacts import ArtifactStore
from regen.engine._blocking import wait_for
from regen.engine._detail import RunDetail, item_counts
from regen.engine._errors import EngineError, RunExists
from regen.engine._execute import Execution
from regen.engine._flow import Flow, auto_retries_problem
from regen.engine._follow import follow as follow_events
from regen.engine._heartbeat import Heartbeat
from regen.engine._json import encode
from regen.engine._loader import Registry, load_flow
from regen.engine._loops import Loops
from regen.engine._resources import execute_with_resources
from regen.engine._settings import Settings
from regen.engine._shared_state import StoreState
from regen.engine._sync import SyncEngine
from regen.engine._worker import OnWorkerEvent, work
from regen.foundation import is_whole
from regen.store import (
    Artifact,
    Claimed,
    Commit,
    DatabaseUnreachable,
    Event,
    GcCounts,
    InvalidTransition,
    Item,
    ItemStatus,
    Lease,
    LeaseLost,
    NewRun,
    Run,
    RunNotFound,
    RunStatus,
    Store,
    StoreBusy,
    open_store,
)
from regen.store import home as default_home

logger = logging.getLogger("regen.engine")
#: How often a run executing in another process is looked at while it is followed.
_FOLLOW_POLL = 0.25
OnFailed = Literal["retry", "refuse", "return"]


@dataclass(frozen=True, slots=True)
class Started:
    """What :meth:`Engine.start` did: the run, whether it was created, whether retried."""

    run: Run
    created: bool
    retried: bool = False


class Engine:
    """Durable execution of flows on a store (by default ``$REGEN_HOME/regen.db``).

    Every method that reads or writes the store is a coroutine; ``engine.sync`` has the
    same methods for synchronous code (scripts, sync web frameworks).

    ``store``: a :class:`Store`, a database URL, or ``None`` for the environment's.
    ``home``: the data directory (artifacts live in ``home/artifacts``). ``threads``:
    the pool that runs sync steps and sync map items. ``readonly``: open the database
    for reading only (inspecting runs where the data directory cannot be written).
    """

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        owner: str | None = None,
        threads: int = 64,
        readonly: bool = False,
    ) -> None:
        # Settings first: a bad variable is refused before a database is opened.
        self.settings = settings or Settings.from_env()
        self.home = Path(home) if home is not None else default_home()
        self._owns_store = not isinstance(store, Store)
        self._store: Store = (
            store
            if isinstance(store, Store)
            else open_store(store, data_home=self.home, readonly=readonly)
        )
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.registry = Registry()
        self.artifacts = ArtifactStore(self._store, self.home / "artifacts")
        self._provider_state = StoreState(self._store)
        self._executions: dict[str, Execution] = {}
        self._heartbeat = Heartbeat(self._store, self.settings.lease_ttl, self._observe, self.owner)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="regen-step")
        #: A worker on this engine is stopping: sync calls in flight are seen through.
        self._draining = False
        self._loops = Loops()
        #: The same methods for synchronous code: ``engine.sync.start(flow, params)``.
        self.sync = SyncEngine(self, self._loops)

    def __repr__(self) -> str:
        return f"Engine({self.location!r})"

    @property
    def location(self) -> str:
        """Where the engine's store is (a database URL; never with a password)."""
        return self._store.location

    @property
    def provider_state(self) -> StoreState:
        """Circuit-breaker and rate-limit state and provider call counters, kept in the
        engine's store: a :class:`regen.providers.SharedState` shared by every run and
        every worker on that database. Give it to a provider registry so its breakers and
        limits are shared; inside a run, steps and resources reach it as
        :func:`current_provider_state`."""
        return self._provider_state

    # --- lifecycle ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Write the provider counters still in memory, stop the engine's threads, and
        close the store if the engine opened it."""
        await self._provider_state.flush()
        self._stop_threads()
        if self._owns_store:
            await self._store.close()

    def close(self) -> None:
        """:meth:`aclose` for synchronous code (``with Engine() as engine``)."""
        wait_for(self._provider_state.flush())
        self._stop_threads()
        if self._owns_store:
            wait_for(self._store.close())

    def _stop_threads(self) -> None:
        self._heartbeat.close()
        self._loops.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _observe(self, lease: Lease, commit: Commit) -> None:
        execution = self._executions.get(lease.run_id)
        if execution is not None and execution.lease.token == lease.token:
            execution.observe(commit)

    # --- flows ----------------------------------------------------------------------------

    def register(self, *flows: Flow | str) -> list[Flow]:
        """Make flows known by name (for workers and ``start("name")``); strings are
        ``MODULE:FLOW`` import strings."""
        return [self.registry.add(load_flow(f) if isinstance(f, str) else f) for f in flows]

    def _flow(self, flow: Flow | str) -> Flow:
        if isinstance(flow, Flow):
            return self.registry.add(flow)
        if ":" in flow:
            return self.registry.add(load_flow(flow))
        return self.registry.get(flow)

    # --- starting and executing -----------------------------------------------------------

    async def start(
        self,
        flow: Flow | str,
        params: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        on_failed: OnFailed = "retry",
        max_retries: int | None = None,
        retry_delay: float | None = None,
    ) -> Started:
        """Queue a run of ``flow`` (params checked first: nothing is created on error).

        With a business ``key`` (given, or made by the flow's ``key`` from ``params``), a
        run that already exists for it is returned instead of a new one; if that run
        failed, ``on_failed`` says what to do: ``"retry"`` it (from its failed step),
        ``"refuse"`` (:class:`RunExists`), or ``"return"`` it as it is.
        ``max_retries``/``retry_delay`` override the flow's automatic retries.
        """
        chosen = self._flow(flow)
        values = chosen.check_params(params)
        if key is None:
            key = chosen.key_of(values)
        max_retries = chosen.max_retries if max_retries is None else max_retries
        retry_delay = chosen.retry_delay if retry_delay is None else retry_delay
        problem = auto_retries_problem(max_retries, retry_delay)
        if problem is not None:
            raise EngineError(f"flow {chosen.name!r}: {problem}")
        if key is not None and "\x00" in key:
            # PostgreSQL text cannot hold one: refused on every store alike.
            raise EngineError(
                f"business key {key!r} holds a NUL character (\\x00); use text without it"
            )
        steps = tuple((s.name, s.kind) for s in chosen.steps)
        new = NewRun(
            uuid.uuid4().hex,
            chosen.name,
            chosen.ref,
            key,
            encode(values, "params"),
            steps,
            max_retries,
            float(retry_delay),
        )
        run, created = await self._store.create_run(new, _time.now())
        if created or run.status is not RunStatus.FAILED or on_failed == "return":
            return Started(run, created)
        if on_failed == "refuse":
            raise RunExists(
                run.id,
                run.status,
                f"flow {chosen.name!r}: the run for key {key!r} "
                f"({run.id}) failed; retry it, or start with another key",
            )
        try:
            return Started(await self._store.retry_run(run.id, _time.now()), False, True)
        except InvalidTransition:  # a concurrent start retried it first
            return Started(await self.get_run(run.id), False)

    async def execute(
        self,
        run_id: str,
        *,
        follow_retries: bool = True,
        follow: bool = False,
        inline_sync: bool = False,
        resources: Any = None,
    ) -> Run:
        """Execute a queued run (or take over one whose process died) in this process.

        Returns the run as it ends. With ``follow_retries``, waits out the run's automatic
        retries and carries them out here. A run executing elsewhere is returned as it is;
        with ``follow``, it is waited for to its end instead, and taken over here if its
        process dies (once its lease expires). ``resources``: the steps' ``ctx.resources``,
        instead of opening the flow's own (``None``: the flow's own, if it declares any).
        """
        return await self._execute(
            await self.get_run(run_id),
            follow_retries=follow_retries,
            follow=follow,
            inline_sync=inline_sync,
            resources=resources,
        )

    async def _execute(
        self,
        run: Run,
        *,
        follow_retries: bool,
        follow: bool,
        inline_sync: bool,
        resources: Any,
    ) -> Run:
        """:meth:`execute` of ``run``, as just read (:meth:`run` has it from the start)."""
        run_id = run.id
        while True:
            if not (run.status is RunStatus.RUNNING and not run.lease_expired(_time.now())):
                claimed = await self._store.claim(
                    self.owner, self.settings.lease_ttl, _time.now(), run_id=run_id
                )
                if claimed is not None:
                    await self._execute_claimed(
                        claimed, inline_sync=inline_sync, resources=resources
                    )
                run = await self.get_run(run_id)
            if follow and run.status is RunStatus.RUNNING:  # in another process
                await self._wait_for_change(run_id, _FOLLOW_POLL)
                run = await self.get_run(run_id)
                continue
            if not (follow_retries and run.status is RunStatus.FAILED and run.retry_at):
                return run
            await _time.sleep(run.retry_at - _time.now())
            # Refused when a manual retry replaced it, or a worker carried it out.
            with contextlib.suppress(InvalidTransition):
                await self._store.retry_run(run_id, _time.now(), auto=True)
            run = await self.get_run(run_id)

    async def _execute_claimed(
        self,
        claimed: Claimed,
        *,
        inline_sync: bool = False,
        release_on_interrupt: bool = False,
        resources: Any = None,
    ) -> RunStatus:
        try:
            flow = self.registry.get(claimed.run.flow, claimed.run.flow_ref)
        except Exception:
            await self._store.release(claimed.lease, _time.now())
            raise
        execution = Execution(self, flow, claimed, inline_sync=inline_sync)
        self._executions[claimed.run.id] = execution
        self._heartbeat.hold(claimed.lease)
        try:
            _faults.point("after_claim")
            status = await execute_with_resources(execution, resources)
            await self._provider_state.flush()
            return status
        except asyncio.CancelledError:
            # Recorded even though this task is being cancelled: shielded from a second
            # cancellation, so the run is released (or marked failed) before it ends.
            await asyncio.shield(execution.interrupted(release=release_on_interrupt))
            raise
        except LeaseLost:
            logger.warning(
                "regen: lost the lease of run %s; another process has it",
                claimed.run.id,
                extra={"run_id": claimed.run.id},
            )
            return RunStatus.RUNNING
        except (DatabaseUnreachable, StoreBusy):
            # Weather, not the run's failure: nothing is recorded (the store is out of
            # reach anyway). Its lease lapses; whichever process then claims it (this one
            # included) resumes it from its checkpoints.
            raise
        except Exception as exc:
            await execution.crashed(exc)
            raise
        finally:
            self._heartbeat.drop(claimed.run.id)
            self._executions.pop(claimed.run.id, None)

    async def run(
        self,
        flow: Flow | str,
        params: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        on_failed: OnFailed = "retry",
        max_retries: int | None = None,
        retry_delay: float | None = None,
        inline_sync: bool = False,
        resources: Any = None,
    ) -> Run:
        """Start a run and execute it here to its end (through automatic retries).

        A keyed run executing in another process is waited for instead, and taken over
        here if that process dies. ``resources``: as for :meth:`execute`.
        """
        started = await self.start(
            flow,
            params,
            key=key,
            on_failed=on_failed,
            max_retries=max_retries,
            retry_delay=retry_delay,
        )
        return await self._execute(
            started.run,
            follow_retries=True,
            follow=True,
            inline_sync=inline_sync,
            resources=resources,
        )

    async def wait(self, run_id: str, poll: float = 0.25) -> Run:
        """Wait until the run has finished (and no automatic retry is pending)."""
        run = await self.get_run(run_id)
        while not run.status.finished or run.retry_at is not None:
            await self._wait_for_change(run_id, poll)
            run = await self.get_run(run_id)
        return run

    async def _wait_for_change(self, run_id: str, poll: float) -> None:
        """Until something is written to the run (in this process), or ``poll`` seconds."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def listener(touched: str) -> None:
            if touched == run_id:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(changed.set)

        remove = self._store.add_listener(listener)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), poll)
        finally:
            remove()

    # --- control --------------------------------------------------------------------------

    async def retry(self, run_id: str, *, from_step: str | None = None) -> Run:
        """Queue a failed or partial run again from its failed step (succeeded items kept),
        or from ``from_step`` (it and every later step re-executed, never from the cache).
        A pending automatic retry is replaced. Refused for a queued or running run (unless
        its process died: its lease expired)."""
        return await self._store.retry_run(run_id, _time.now(), from_step=from_step)

    async def cancel(self, run_id: str) -> Run:
        """Cancel a queued run at once; stop a running one at its next safe point."""
        run = await self._store.request_cancel(run_id, _time.now())
        execution = self._executions.get(run_id)
        if execution is not None:
            execution.cancel_requested = True
        return run

    async def delete(self, run_id: str) -> None:
        """Delete a finished run with its steps, items and events (artifacts only it used
        go at the next clean-up). Refused while it is queued, running or waiting for an
        automatic retry: cancel it first."""
        await self._store.delete_run(run_id)

    # --- reading --------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        """The run (:class:`RunNotFound` if there is none)."""
        run = await self._store.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def find_run(self, flow: Flow | str, key: str) -> Run | None:
        """The run of ``flow`` started with business ``key``, or ``None``."""
        name = flow.name if isinstance(flow, Flow) else flow
        return await self._store.find_run(name, key)

    async def detail(self, run_id: str) -> RunDetail:
        """The run with its steps, checkpoints and item counts."""
        run = await self.get_run(run_id)
        steps = await self._store.get_steps(run_id)
        items = {
            s.name: item_counts(await self._store.count_items(run_id, s.name))
            for s in steps
            if s.kind == "map"
        }
        return RunDetail(run, steps, items)

    async def list_runs(
        self,
        *,
        status: Sequence[RunStatus | str] | None = None,
        flow: str | None = None,
        before: float | None = None,
        limit: int = 50,
        id_prefix: str | None = None,
    ) -> list[Run]:
        """Runs, newest first (``id_prefix``: only those whose id starts so)."""
        statuses = None if status is None else [RunStatus(s) for s in status]
        return await self._store.list_runs(
            statuses=statuses, flow=flow, before=before, limit=_limit(limit), id_prefix=id_prefix
        )

    async def read_all_events(
        self, after: int = 0, limit: int = 1000, *, prefix: str | None = None
    ) -> list[Event]:
        """Events of every run with ``cursor > after``, oldest first (``prefix``: only
        types starting so, e.g. ``"run."``)."""
        return await self._store.read_all_events(after, _limit(limit), prefix=prefix)

    async def items(
        self,
        run_id: str,
        step: str,
        *,
        status: ItemStatus | str | None = None,
        after: int = -1,
        limit: int = 100,
    ) -> list[Item]:
        """Items of a map step, in order (page with ``after``: the last ``idx`` seen)."""
        chosen = None if status is None else ItemStatus(status)
        return await self._store.get_items(
            run_id, step, after=after, limit=_limit(limit), status=chosen
        )

    async def read_events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events with ``seq > after``."""
        return await self._store.read_events(run_id, after, _limit(limit))

    def events(
        self, run_id: str, *, after: int = 0, follow: bool = False, poll: float = 0.25
    ) -> AsyncIterator[Event]:
        """Events with ``seq > after``; with ``follow``, new ones as they are written, until
        the run ends (resume a broken stream by passing the last ``seq`` seen)."""
        return follow_events(self._store, run_id, after=after, follow=follow, poll=poll)

    async def artifact(self, sha256: str) -> Artifact | None:
        """An artifact's metadata (its bytes: ``engine.artifacts.read``)."""
        return await self.artifacts.get(sha256)

    async def check(self) -> list[str]:
        """The store's integrity check: the problems found (none: an empty list)."""
        return await self._store.check()

    # --- clean-up and workers -------------------------------------------------------------

    async def gc(self, now: float | None = None) -> GcCounts:
        """Delete expired checkpoints (those runs are no longer resumable), finished runs
        past their retention with their events, unreferenced artifacts, stale cache and
        provider counters past theirs."""
        at = _time.now() if now is None else now
        s = self.settings
        await self._provider_state.flush()  # counters still in memory are judged too
        return await self._store.collect(
            checkpoints_before=at - s.checkpoint_retention_hours * 3600,
            runs_before=at - s.run_retention_days * 86400,
            artifacts_before=at - s.run_retention_days * 86400,
            now=at,
            remove_file=self.artifacts.blobs.remove,
            counts_before=at - s.stats_retention_days * 86400,
        )

    async def worker(
        self,
        *,
        flows: Sequence[str] | None = None,
        concurrency: int = 4,
        poll: float = 1.0,
        stop: asyncio.Event | None = None,
        gc_interval: float | None = None,
        max_runs: int | None = None,
        on_event: OnWorkerEvent | None = None,
    ) -> int:
        """Claim and execute queued runs (and runs whose process died) until ``stop`` is set;
        with room left, run items of map steps of runs other processes execute.

        ``flows``: names to claim (default: the registered flows, or, when none is,
        any run whose recorded ``MODULE:FLOW`` imports). Carries out due automatic
        retries and cleans up every ``gc_interval`` seconds. Returns the runs executed.
        ``on_event``: called with a :class:`WorkerEvent` for every run claimed, taken
        over, finished, failed, put back or lost (it must not block).
        """
        return await work(
            self,
            flows=flows,
            concurrency=concurrency,
            poll=poll,
            stop=stop,
            gc_interval=gc_interval,
            max_runs=max_runs,
            on_event=on_event,
        )


def _limit(limit: int) -> int:
    """A page's size as given, refused when negative (SQLite would read it as no limit at
    all, PostgreSQL as an error)."""
    if not is_whole(limit) or limit < 0:
        raise ValueError(f"limit={limit!r}: expected a whole number ≥ 0")
    return limit
