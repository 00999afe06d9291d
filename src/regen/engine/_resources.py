"""A flow's resources: opened for an execution in whichever process holds the run, closed
after it however it ends."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from regen.engine._execute import Execution
from regen.engine._shared_state import providing
from regen.store import RunStatus

logger = logging.getLogger("regen.engine")


async def execute_with_resources(execution: Execution, given: Any) -> RunStatus:
    """Execute with ``ctx.resources``: ``given``, or the flow's own, opened here; the
    engine's provider state is :func:`current_provider_state` meanwhile."""
    with providing(execution.engine.provider_state):
        return await _execute(execution, given)


async def _execute(execution: Execution, given: Any) -> RunStatus:
    if given is not None:
        execution.resources = given
        return await execution.execute()
    stack = contextlib.AsyncExitStack()
    try:
        await open_resources(execution, stack)
    except Exception as exc:
        await _close(stack, execution.run_id)
        return await execution.resources_failed(exc)
    try:
        return await execution.execute()
    finally:
        await _close(stack, execution.run_id)


async def open_resources(execution: Execution, stack: contextlib.AsyncExitStack) -> None:
    """Open the flow's resources, if it has any, into ``stack`` (which closes them) and
    make them ``ctx.resources``."""
    factory = execution.flow.resources
    if factory is None:
        return
    value = factory(execution.params_view)
    if hasattr(value, "__aenter__"):
        value = await stack.enter_async_context(value)
    elif hasattr(value, "__enter__"):
        value = stack.enter_context(value)
    execution.resources = value


async def _close(stack: contextlib.AsyncExitStack, run_id: str) -> None:
    """Close a run's resources; a failure to close is logged, never the run's outcome."""
    try:
        await stack.aclose()
    except Exception:
        logger.warning(
            "regen: closing the resources of run %s failed",
            run_id,
            exc_info=True,
            extra={"run_id": run_id},
        )
