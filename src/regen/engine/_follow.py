"""Reading a run's event log from a sequence number, and following it as it grows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from regen.store import Event, RunNotFound, Store

_PAGE = 500


async def follow(
    store: Store, run_id: str, *, after: int = 0, follow: bool = False, poll: float = 0.25
) -> AsyncIterator[Event]:
    """Events with ``seq > after``; with ``follow``, keep waiting for new ones until the run
    has finished (and no automatic retry is pending).

    New events are noticed by a poll every ``poll`` seconds (other processes) and at once
    when they are written in this process.
    """
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def listener(changed: str) -> None:
        if changed == run_id:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(wake.set)

    remove = store.add_listener(listener) if follow else None
    try:
        while True:
            wake.clear()
            run = await store.get_run(run_id) if follow else None
            if follow and run is None:
                raise RunNotFound(run_id)
            batch = await store.read_events(run_id, after, _PAGE)
            for event in batch:
                after = event.seq
                yield event
            if len(batch) == _PAGE:
                continue
            if not follow:
                return
            assert run is not None
            if run.status.finished and run.retry_at is None:
                # The status was read before the events: every event of the run is read.
                return
            # asyncio.wait, not wait_for: Python 3.11's wait_for loses a cancellation that
            # arrives as the event is set, and the follower then never stops.
            waiter = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=poll)
            finally:
                waiter.cancel()
    finally:
        if remove is not None:
            remove()
