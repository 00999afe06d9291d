"""The worker loop: claim queued runs (and runs whose process died), run them, clean up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from regen.engine import _time
from regen.engine._errors import FlowNotFound
from regen.store import Claimed, InvalidTransition, RunStatus

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
) -> int:
    """Run queued runs until ``stop`` is set (or ``max_runs`` have been run); returns how
    many runs this worker executed. See :meth:`Engine.worker`."""
    stop = stop or asyncio.Event()
    names = list(flows) if flows is not None else (engine.registry.names() or None)
    interval = engine.settings.gc_interval if gc_interval is None else gc_interval
    last_gc = _time.monotonic()  # the engine's clock: a fake one under test mode
    tasks: set[asyncio.Task[None]] = set()
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()

    def listener(_: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(wake.set)

    remove = engine._store.add_listener(listener)
    unloadable: set[str] = set()
    executed = 0
    try:
        while not stop.is_set() and (max_runs is None or executed < max_runs):
            wake.clear()
            await _carry_out_due_retries(engine, names)
            while len(tasks) < concurrency and (max_runs is None or executed < max_runs):
                claimed = await engine._store.claim(
                    engine.owner, engine.settings.lease_ttl, _time.now(), flows=names
                )
                if claimed is None:
                    break
                try:
                    engine.registry.get(claimed.run.flow, claimed.run.flow_ref)
                except FlowNotFound as exc:
                    await engine._store.release(claimed.lease, _time.now())
                    if claimed.run.flow not in unloadable:
                        logger.error(
                            "regen worker: skipping runs of flow %s: %s",
                            claimed.run.flow,
                            exc,
                            extra={"flow": claimed.run.flow},
                        )
                        unloadable.add(claimed.run.flow)
                    names = [n for n in (names or await _known(engine)) if n not in unloadable]
                    continue
                executed += 1
                task = asyncio.create_task(_run(engine, claimed))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: wake.set())
            if interval and _time.monotonic() - last_gc >= interval:
                last_gc = _time.monotonic()
                counts = await engine.gc()
                logger.info("regen worker: clean-up %s", counts, extra={"gc": str(counts)})
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        while tasks and not stop.is_set():
            await asyncio.wait(set(tasks))
    finally:
        remove()
        for task in list(tasks):
            task.cancel()  # their runs go back to the queue for another worker
        await asyncio.gather(*tasks, return_exceptions=True)
    return executed


async def _carry_out_due_retries(engine: Engine, names: list[str] | None) -> None:
    for run_id in await engine._store.due_retries(_time.now(), names):
        # Refused when another worker, or a manual retry, got there first.
        with contextlib.suppress(InvalidTransition):
            await engine._store.retry_run(run_id, _time.now(), auto=True)


async def _known(engine: Engine) -> list[str]:
    runs = await engine._store.list_runs(statuses=[RunStatus.QUEUED, RunStatus.RUNNING], limit=1000)
    return sorted({r.flow for r in runs})


async def _run(engine: Engine, claimed: Claimed) -> None:
    try:
        await engine._execute_claimed(claimed, release_on_interrupt=True)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("regen worker: a run ended with an engine error")
