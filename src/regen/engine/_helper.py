"""A worker with room runs items of a map step of a run another process executes.

The run's own execution records the step's items and opens them; any worker may then
claim some (``Store.claim_items``). To run them, a worker builds what the step's function
sees: the flow (loaded by name or ``MODULE:FLOW`` like any run it claims), the run's params,
the results of the steps before, and the flow's resources, opened here. One session per
step at a time in a process, so the step's ``concurrency`` bounds what this process runs
of it; a session claims more of the step's items as its own end, until none is left.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from regen.engine._errors import FlowError, FlowNotFound
from regen.engine._execute import Execution
from regen.engine._items import ItemRunner
from regen.engine._outcome import Stop
from regen.engine._resources import open_resources
from regen.engine._shared_state import providing
from regen.store import ClaimedItems, LeaseLost

if TYPE_CHECKING:
    from regen.engine._engine import Engine

logger = logging.getLogger("regen.engine")


class Helpers:
    """The map steps of other processes' runs this worker runs items of, by run and step."""

    def __init__(self, engine: Engine, may_claim: Callable[[], bool] | None = None) -> None:
        self._engine = engine
        self._may_claim = may_claim
        self._sessions: dict[tuple[str, str], ItemRunner] = {}
        #: Flows whose items this worker cannot run (not found here, or changed).
        self.skipped: set[str] = set()

    async def session(self, claimed: ClaimedItems) -> ItemRunner | None:
        """A new session for the claimed items' step, or ``None`` when one runs already
        (the items join it) or the flow cannot be run here: then the items are given back
        at once for another worker, and this one claims no more items of that flow."""
        engine = self._engine
        where = (claimed.run.id, claimed.step.name)
        known = self._sessions.get(where)
        if known is not None:
            known.adopt(claimed)
            return None
        run = claimed.run
        try:
            flow = engine.registry.get(run.flow, run.flow_ref)
            spec = flow.step_named(claimed.step.name)
        except (FlowNotFound, FlowError) as exc:
            await engine._store.release_items(claimed.lease)
            if run.flow not in self.skipped:
                self.skipped.add(run.flow)
                logger.error(
                    "regen worker: not running items of flow %s here: %s",
                    run.flow,
                    exc,
                    extra={"run_id": run.id, "flow": run.flow},
                )
            return None
        ex = Execution(engine, flow, claimed, inline_sync=False)
        step = claimed.step
        runner = ItemRunner(
            ex, spec, step.generation, step.refresh, quota=step.quota, may_claim=self._may_claim
        )
        runner.adopt(claimed)
        self._sessions[where] = runner
        return runner

    async def run(self, runner: ItemRunner) -> None:
        """Run a session's items, and more of the step's while any is left to claim."""
        ex = runner.ex
        where = (ex.run_id, runner.spec.name)
        try:
            await ex.load_results()
            async with _resources(ex):
                await runner.run(until_done=False)
            await ex.outbox.flush()
        except (LeaseLost, Stop):
            pass  # the run ended, was cancelled, or this worker's items were taken over
        finally:
            self._sessions.pop(where, None)


@contextlib.asynccontextmanager
async def _resources(ex: Execution) -> AsyncIterator[None]:
    """The flow's resources for ``ctx.resources``, opened for the session, closed after;
    the engine's provider state (shared breakers and limits) is current meanwhile, as for
    the run's own execution."""
    with providing(ex.engine.provider_state):
        async with contextlib.AsyncExitStack() as stack:
            await open_resources(ex, stack)
            yield
