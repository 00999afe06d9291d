"""The worker loop: claim queued runs (and runs whose process died), run them, help run the
items of map steps other workers' runs have opened, clean up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from regen.engine import _time
from regen.engine._errors import FlowNotFound
from regen.engine._helper import Helpers
from regen.engine._items import ItemRunner
from regen.foundation import is_finite, is_whole
from regen.store import Claimed, DatabaseUnreachable, InvalidTransition, RunStatus, StoreBusy

WorkerAction = Literal["claimed", "taken_over", "finished", "failed", "put_back", "lost"]


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """What a worker just did with a run, for whoever watches it (``regen worker``).

    ``action``: ``claimed`` (a queued run), ``taken_over`` (a run whose process died),
    ``finished`` (it ended succeeded, partial or cancelled: ``status``), ``failed``
    (``error``: the run's error record; ``retry_at``: when an automatic retry is due),
    ``put_back`` (returned to the queue: the worker stopped, or the flow cannot be
    loaded here: ``reason``), ``lost`` (another process took its lease, or, with a
    ``reason``, the database was out of reach for longer than the store waits: the run is
    taken over from its checkpoints once its lease expires).
    """

    action: WorkerAction
    run_id: str
    flow: str
    at: float
    status: str | None = None
    error: dict[str, Any] | None = None
    retry_at: float | None = None
    reason: str | None = None


OnWorkerEvent = Callable[[WorkerEvent], None]

if TYPE_CHECKING:
    from regen.engine._engine import Engine

logger = logging.getLogger("regen.engine")


async def work(
    engine: Engine,
    *,
    flows: Sequence[str] | None = None,
    concurrency: int = 4,
    poll: float = 1.0,
    stop: asyncio.Event | None = None,
    gc_interval: float | None = None,
    max_runs: int | None = None,
    on_event: OnWorkerEvent | None = None,
) -> int:
    """Run queued runs until ``stop`` is set (or ``max_runs`` have been run); returns how
    many runs this worker executed. See :meth:`Engine.worker`."""
    _check(concurrency=concurrency, poll=poll, max_runs=max_runs, gc_interval=gc_interval)
    stop = stop or asyncio.Event()
    report = _reporter(on_event)
    names = list(flows) if flows is not None else (engine.registry.names() or None)
    interval = engine.settings.gc_interval if gc_interval is None else gc_interval
    last_gc = _time.monotonic()  # the engine's clock: a fake one under test mode
    tasks: set[asyncio.Task[None]] = set()  # the runs it executes
    # Sessions running items of other processes' map steps, in room the runs leave: a run
    # to take over (its worker died) or start is claimed whatever they hold.
    helping: set[asyncio.Task[None]] = set()
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()

    def queued(flow: str) -> None:
        # A run was queued here or, on PostgreSQL, by any process: claim it now rather
        # than at the next poll (the poll stays, for what no notification tells of).
        if not flow or names is None or flow in names:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(wake.set)

    remove = engine._store.add_queue_listener(queued)
    unloadable: set[str] = set()
    # A helping session claims more items only while the runs leave it room.
    helpers = Helpers(engine, lambda: len(tasks) + len(helping) <= concurrency)
    executed = 0
    try:
        while not stop.is_set() and (max_runs is None or executed < max_runs):
            wake.clear()
            wait = poll
            try:
                await _carry_out_due_retries(engine, names)
                while len(tasks) < concurrency and (max_runs is None or executed < max_runs):
                    claimed = await engine._store.claim(
                        engine.owner, engine.settings.lease_ttl, _time.now(), flows=names
                    )
                    if claimed is None:
                        break
                    if not await _loadable(engine, claimed, unloadable, report):
                        names = [n for n in (names or await _known(engine)) if n not in unloadable]
                        continue
                    executed += 1
                    action: WorkerAction = "taken_over" if claimed.taken_over else "claimed"
                    report(WorkerEvent(action, claimed.run.id, claimed.run.flow, _time.now()))
                    _keep(tasks, asyncio.create_task(_run(engine, claimed, report)), wake)
                # Room left: run items of map steps other processes' runs have opened.
                room = concurrency - len(tasks) - len(helping)
                await _help_while_room(engine, helpers, names, helping, room, stop, wake)
                last_gc = await _clean_up_when_due(engine, interval, last_gc)
                wait = await _until_next_retry(engine, names, poll)
            except DatabaseUnreachable as exc:
                # Weather: the database restarts or the network is cut. The runs in hand
                # wait for it in the store; the queue is looked at again after the poll.
                logger.warning(
                    "regen worker: the database cannot be reached; trying again",
                    extra={"error": str(exc)},
                )
            await _nap(wake, stop, wait)
        while (tasks or helping) and not stop.is_set():
            await asyncio.wait({*tasks, *helping})
    finally:
        remove()
        await _stop(engine, [*tasks, *helping])
    return executed


async def _stop(engine: Engine, tasks: list[asyncio.Task[None]]) -> None:
    """Stop the worker's runs and helping sessions: their runs go back to the queue, their
    items to pending; sync calls in flight, which nothing can stop, are waited for and
    recorded first (``Execution.in_thread``)."""
    engine._draining = True
    for task in tasks:
        task.cancel()
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        engine._draining = False


def _keep(tasks: set[asyncio.Task[None]], task: asyncio.Task[None], wake: asyncio.Event) -> None:
    """Hold ``task`` among the worker's until it ends, then wake the worker."""
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    task.add_done_callback(lambda _: wake.set())


async def _nap(wake: asyncio.Event, stop: asyncio.Event, wait: float) -> None:
    """Until woken, stopped, or ``wait`` seconds have passed."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()


def _check(
    *, concurrency: int, poll: float, max_runs: int | None, gc_interval: float | None
) -> None:
    """Refuse settings a worker cannot work with, naming the one to fix."""
    if not is_whole(concurrency) or concurrency < 1:
        raise ValueError(f"worker concurrency={concurrency!r}: expected a whole number ≥ 1")
    if not is_finite(poll) or poll <= 0:
        raise ValueError(f"worker poll={poll!r}: expected a number of seconds > 0")
    if max_runs is not None and (not is_whole(max_runs) or max_runs < 0):
        raise ValueError(f"worker max_runs={max_runs!r}: expected a whole number ≥ 0, or None")
    if gc_interval is not None and (not is_finite(gc_interval) or gc_interval < 0):
        raise ValueError(
            f"worker gc_interval={gc_interval!r}: expected a number of seconds ≥ 0 (0: never)"
        )


async def _until_next_retry(engine: Engine, names: list[str] | None, poll: float) -> float:
    """How long to wait for a wake-up: the poll interval, or less when an automatic retry
    falls due sooner (nothing notifies of that). Not under 0.2 s, should a retry stay due."""
    due = await engine._store.next_retry_at(names)
    if due is None:
        return poll
    return min(poll, max(due - _time.now(), 0.2))


async def _clean_up_when_due(engine: Engine, interval: float, last: float) -> float:
    """Clean up once ``interval`` has passed since ``last``; when it last cleaned up."""
    if not interval or _time.monotonic() - last < interval:
        return last
    last = _time.monotonic()
    counts = await engine.gc()
    logger.info("regen worker: clean-up %s", counts, extra={"gc": str(counts)})
    return last


def _reporter(on_event: OnWorkerEvent | None) -> OnWorkerEvent:
    def report(event: WorkerEvent) -> None:
        if on_event is not None:
            try:
                on_event(event)
            except Exception:  # a watcher's bug must not stop the worker
                logger.exception("regen worker: the on_event callback failed")

    return report


async def _loadable(
    engine: Engine, claimed: Claimed, unloadable: set[str], report: OnWorkerEvent
) -> bool:
    """Whether the claimed run's flow loads here; if not, the run is put back (and its
    flow added to ``unloadable``)."""
    run = claimed.run
    try:
        engine.registry.get(run.flow, run.flow_ref)
    except FlowNotFound as exc:
        await engine._store.release(claimed.lease, _time.now())
        report(WorkerEvent("put_back", run.id, run.flow, _time.now(), reason=str(exc)))
        if run.flow not in unloadable:
            logger.error(
                "regen worker: skipping runs of flow %s: %s",
                run.flow,
                exc,
                extra={"flow": run.flow},
            )
            unloadable.add(run.flow)
        return False
    return True


async def _carry_out_due_retries(engine: Engine, names: list[str] | None) -> None:
    for run_id in await engine._store.due_retries(_time.now(), names):
        # Refused when another worker, or a manual retry, got there first.
        with contextlib.suppress(InvalidTransition):
            await engine._store.retry_run(run_id, _time.now(), auto=True)


async def _known(engine: Engine) -> list[str]:
    runs = await engine._store.list_runs(statuses=[RunStatus.QUEUED, RunStatus.RUNNING], limit=1000)
    return sorted({r.flow for r in runs})


async def _help_while_room(
    engine: Engine,
    helpers: Helpers,
    names: list[str] | None,
    helping: set[asyncio.Task[None]],
    room: int,
    stop: asyncio.Event,
    wake: asyncio.Event,
) -> None:
    """Start up to ``room`` sessions running claimed items of open map steps."""
    for _ in range(room):
        if stop.is_set():
            return
        session = await _help_next(engine, helpers, names)
        if session is None:
            return
        _keep(helping, session, wake)


async def _help_next(
    engine: Engine, helpers: Helpers, names: list[str] | None
) -> asyncio.Task[None] | None:
    """Claim items of an open map step and start running them; ``None`` when there are none
    to claim. (Claimed items of a step this process already helps with join that session.)"""
    while True:
        flows = names
        if helpers.skipped:
            flows = [n for n in (names or await _known(engine)) if n not in helpers.skipped]
        found = await engine._store.claim_items(
            engine.owner,
            uuid.uuid4().hex,
            engine.settings.lease_ttl,
            _time.now(),
            limit=1,
            flows=flows,
        )
        if found is None:
            return None
        session = await helpers.session(found)
        if session is not None:
            return asyncio.create_task(_help(helpers, session))


async def _help(helpers: Helpers, session: ItemRunner) -> None:
    try:
        await helpers.run(session)
    except Exception:
        logger.exception(
            "regen worker: running items of run %s failed",
            session.ex.run_id,
            extra={"run_id": session.ex.run_id},
        )


async def _run(engine: Engine, claimed: Claimed, report: OnWorkerEvent) -> None:
    run_id, flow = claimed.run.id, claimed.run.flow
    try:
        status = await engine._execute_claimed(claimed, release_on_interrupt=True)
    except asyncio.CancelledError:
        report(WorkerEvent("put_back", run_id, flow, _time.now(), reason="the worker stopped"))
        raise
    except (DatabaseUnreachable, StoreBusy) as exc:
        why = f"{exc}; it is taken over from its checkpoints once its lease expires"
        report(WorkerEvent("lost", run_id, flow, _time.now(), reason=why))
        return
    except Exception:
        logger.exception("regen worker: a run ended with an engine error")
    else:
        if status is RunStatus.RUNNING:
            report(WorkerEvent("lost", run_id, flow, _time.now()))
            return
    run = await engine._store.get_run(run_id)
    if run is None:
        return
    if run.status is RunStatus.FAILED:
        report(
            WorkerEvent(
                "failed",
                run_id,
                flow,
                _time.now(),
                status=str(run.status),
                error=run.error,
                retry_at=run.retry_at,
            )
        )
    else:
        report(WorkerEvent("finished", run_id, flow, _time.now(), status=str(run.status)))
