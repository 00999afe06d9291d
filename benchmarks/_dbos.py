"""DBOS Transact as a peer: a workflow of N trivial steps, sync and async, registered and
launched once per process (DBOS is a process-wide singleton)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any


def launch_dbos(
    config: dict[str, Any],
) -> tuple[Any, Callable[[int], int], Callable[[int], Coroutine[Any, Any, int]]]:
    """Configure and launch DBOS; ``(DBOS, workflow, aworkflow)``, each workflow running
    ``count`` steps that return their index."""
    from dbos import DBOS  # noqa: PLC0415 - a peer, only for the benchmarks

    DBOS(config=config)  # type: ignore[arg-type]

    @DBOS.step()
    def step(i: int) -> int:
        return i

    @DBOS.step()
    async def astep(i: int) -> int:
        return i

    @DBOS.workflow()
    def workflow(count: int) -> int:
        for i in range(count):
            step(i)
        return count

    @DBOS.workflow()
    async def aworkflow(count: int) -> int:
        for i in range(count):
            await astep(i)
        return count

    DBOS.launch()
    return DBOS, workflow, aworkflow
