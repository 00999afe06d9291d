"""A worker process for the tests of items spread across workers: it runs items of map
steps other processes' runs open (and any queued run of the flows given) until killed.

Run as ``python tests/engine/items_child.py DATABASE_URL HOME MODULE:FLOW ...``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from regen.engine import Engine


async def main(url: str, home: str, flows: list[str]) -> None:
    engine = Engine(url, home=home)
    engine.register(*flows)
    try:
        await engine.worker(concurrency=2, poll=0.05, gc_interval=0)
    finally:
        engine.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
