"""The crash tests' child: a worker that runs the queued runs until they have all ended.

Run as ``python tests/engine/crash_child.py DATABASE_URL HOME [MODULE:FLOW ...]`` (default:
the crashy flow); fault points come from the environment (``REGEN_FAULT_POINT``), and the
parent may SIGKILL it at random too.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from regen.engine import Engine


async def main(database: str, home: str, flows: list[str]) -> None:
    engine = Engine(database, home=home)
    engine.register(*(flows or ["engine.flows:crashy"]))
    stop = asyncio.Event()

    async def watch() -> None:
        while True:
            runs = await engine.list_runs(limit=1000)
            if runs and all(r.status.finished for r in runs):
                stop.set()
                return
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        await engine.worker(concurrency=4, poll=0.05, stop=stop, gc_interval=0)
    finally:
        watcher.cancel()
        engine.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
