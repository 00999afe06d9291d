"""A worker hosted by the server: queued runs, automatic retries and clean-up proceed with
nothing else running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from regen.engine import Engine

logger = logging.getLogger("regen.service")


@contextlib.asynccontextmanager
async def hosted_worker(
    engine: Engine,
    *,
    flows: Sequence[str] | None = None,
    concurrency: int = 4,
    poll: float = 1.0,
    gc_interval: float | None = 3600.0,
) -> AsyncIterator[asyncio.Task[int]]:
    """Run ``engine.worker(...)`` as a background task while the block runs; on leaving,
    stop it (a run in flight is released for another process to resume). For an app that
    mounts :func:`create_app`, enter it in the app's own lifespan."""
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        engine.worker(
            flows=flows, concurrency=concurrency, poll=poll, stop=stop, gc_interval=gc_interval
        ),
        name="regen-worker",
    )
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 5.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except Exception:
            logger.exception("regen: the hosted worker failed")
