"""engine.sync's private event loop: kept per thread between calls, leftovers cancelled."""

from __future__ import annotations

import asyncio
import threading

from regen.engine._loops import Loops


def test_a_thread_reuses_its_loop_and_each_call_cancels_what_it_leaves_behind() -> None:
    loops = Loops()
    seen: list[asyncio.AbstractEventLoop] = []
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> int:
        seen.append(asyncio.get_running_loop())
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)
        return 7

    try:
        assert loops.run(main()) == 7
        assert cancelled.is_set()
        assert loops.run(main()) == 7
        assert seen[0] is seen[1]
    finally:
        loops.close()
    assert seen[0].is_closed()


def test_threads_get_their_own_loops() -> None:
    loops = Loops()
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        seen.append(asyncio.get_running_loop())

    thread = threading.Thread(target=lambda: loops.run(main()))
    thread.start()
    thread.join()
    loops.run(main())
    loops.close()
    assert seen[0] is not seen[1]
    assert all(loop.is_closed() for loop in seen)


async def test_closing_from_inside_a_running_loop_still_closes_the_kept_loops() -> None:
    loops = Loops()
    kept: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        kept.append(asyncio.get_running_loop())

    thread = threading.Thread(target=lambda: loops.run(main()))
    thread.start()
    thread.join()
    loops.close()  # here a loop is running: the clean-up run is skipped, the loop closed
    assert kept[0].is_closed()
