"""Executing one claimed run: its steps in order, each checkpointed before the next."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from regen.engine import _faults, _steps, _time
from regen.engine._context import NO_RESOURCES, Results, event_write
from regen.engine._flow import Flow, StepSpec
from regen.engine._json import encode
from regen.engine._outbox import Outbox
from regen.engine._outcome import Outcome, Stop, error_of
from regen.retry import Attempt, Policy
from regen.store import (
    Claimed,
    ClaimedItems,
    Commit,
    EndRun,
    EndStep,
    EventType,
    ItemLease,
    Lease,
    LeaseLost,
    RunStatus,
    StartStep,
    StepStatus,
    Write,
)

if TYPE_CHECKING:
    from regen.engine._engine import Engine

logger = logging.getLogger("regen.engine")
T = TypeVar("T")
_DONE = (StepStatus.SUCCEEDED, StepStatus.PARTIAL)

#: The log's word on a cancel that came while the last step ran: the step finished.
_LATE_CANCEL = "cancel requested during the last step, which finished: the run ends as it ran"


class StepState(NamedTuple):
    """What executing a step needs of its record: its position and how far it got."""

    position: int
    status: StepStatus
    generation: int = 0
    refresh: bool = False
    attempts: int = 0


class Execution:
    """One process's execution of a run it holds the lease of; or, for a worker that runs
    some items of another's run (``claimed``: :class:`ClaimedItems`), what those items need
    of the run: params, earlier results, resources, and an outbox under their lease."""

    def __init__(
        self, engine: Engine, flow: Flow, claimed: Claimed | ClaimedItems, *, inline_sync: bool
    ) -> None:
        self.engine = engine
        self.store = engine._store
        self.flow = flow
        self.run = claimed.run
        self.run_id = claimed.run.id
        self.lease: Lease | ItemLease = claimed.lease
        self.params: dict[str, Any] = dict(claimed.run.params)
        self.taken_over = isinstance(claimed, Claimed) and claimed.taken_over
        self._results: dict[str, Any] = {}
        self.results = Results(self._results, flow.name)
        self.cancel_requested = claimed.run.cancel_requested
        self.lost = False
        self.step_at: int | None = None  # the position of the step executing now
        self.inline_sync = inline_sync
        # What steps see: the stored params with a date param as a ``datetime.date``.
        self.params_view: Mapping[str, Any] = MappingProxyType(flow.step_params(self.params))
        #: A sync step runs inline on the event loop's thread (``engine.sync.run``) right now.
        self.blocking = False
        #: A sync call was seen through after its worker began to stop (see in_thread).
        self.draining = False
        #: ``ctx.resources``: what the flow's ``resources`` gave (or the caller passed).
        self.resources: Any = NO_RESOURCES
        self.outbox = Outbox(self.store, self.lease, asyncio.get_running_loop(), self.observe)

    # --- plumbing ----------------------------------------------------------------------------

    def observe(self, commit: Commit) -> None:
        """Hear a commit's or heartbeat's outcome (any thread)."""
        if not commit.ok:
            self.lost = True
        elif commit.cancel_requested:
            self.cancel_requested = True

    def event(
        self, type_: str, data: dict[str, Any], *, step: str | None = None, index: int = -1
    ) -> None:
        """Queue an event (any thread; committed in order, soon)."""
        if step is not None:
            data = {"step": step, **data}
            if index >= 0:
                data["item"] = index
        self.outbox.add([event_write(type_, data, f"event {type_!r}")], blocking=self.blocking)

    async def commit(self, writes: list[Write]) -> None:
        """Commit durably, after everything queued before; :class:`LeaseLost` if the lease
        was lost."""
        result = await self.outbox.commit(writes)
        if not result.ok:
            self.lost = True
            raise LeaseLost(self.run_id)
        if result.cancel_requested:
            self.cancel_requested = True

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a sync function in the engine's thread pool (context variables carried).

        A thread cannot be stopped. Cancelled because its worker stops, the call is waited
        for and its value returned, to be recorded: given back unfinished, its step or
        item would be run again by another worker while this thread still runs it (the
        same provider call paid twice). The execution then stops at its next checkpoint
        (``draining``); a call that fails meanwhile ends it at once."""
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        future = asyncio.get_running_loop().run_in_executor(self.engine._pool, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not self.engine._draining or future.done():
                future.cancel()
                raise
        self.draining = True
        try:
            return await future
        except Exception as exc:
            raise asyncio.CancelledError from exc

    def key(self, step: str, generation: int, item: str | None = None) -> str:
        """The idempotency key of a step (or an item): stable across retries and
        take-overs; a new generation when a retry from a step invalidates it."""
        base = f"{self.run_id}/{step}" + (f"#{generation}" if generation else "")
        return base if item is None else f"{base}/{item}"

    def policy_for(
        self, spec: StepSpec, key: str, *, index: int = -1, failed: list[Attempt] | None = None
    ) -> Policy:
        """The step's policy, carrying its idempotency key and an ``attempt.failed`` hook
        (which also collects the failed attempts into ``failed``)."""

        def on_retry(attempt: Attempt) -> None:
            if failed is not None:
                failed.append(attempt)
            self.event(
                EventType.ATTEMPT_FAILED,
                {
                    "attempt": attempt.number,
                    "kind": str(attempt.kind),
                    "status": attempt.status,
                    "message": attempt.message,
                    "wait": attempt.wait,
                },
                step=spec.name,
                index=index,
            )

        return spec.policy.replace(
            on_retry=on_retry, idempotency_key=key, operation=f"{self.flow.name}.{spec.name}"
        )

    def saved(self, name: str, n: int = 1) -> None:
        """Count provider calls saved by the engine (``saved_by_checkpoint``: a step or
        item not run again because its checkpoint exists; ``saved_by_cache``: a result
        cache hit); not per provider, so under provider ``""``."""
        if n:
            self.engine.provider_state.add({("", "", name): n}, _time.now())

    def check_cancel(self) -> None:
        """A safe point: stop here if cancellation was asked or the lease was lost."""
        if self.lost:
            raise LeaseLost(self.run_id)
        if self.cancel_requested:
            raise Stop

    # --- the run -----------------------------------------------------------------------------

    def _end_writes(
        self,
        status: RunStatus,
        error: dict[str, Any] | None = None,
        failed_step: str | None = None,
        *,
        automatic: bool = True,
    ) -> list[Write]:
        at = _time.now()
        retry_at = None
        run = self.run
        if (
            automatic
            and status is RunStatus.FAILED
            and self.engine.settings.auto_retry
            and run.auto_retries < run.max_retries
        ):
            retry_at = at + run.retry_delay
        data: dict[str, Any] = {}
        if error is not None:
            data["error"] = error
        if failed_step is not None:
            data["failed_step"] = failed_step
        if retry_at is not None:
            data["retry_at"] = retry_at
            data["retry"] = run.auto_retries + 1
        error_text = None if error is None else encode({**error, "step": failed_step}, "error")
        return [
            EndRun(status, at, error_text, retry_at),
            event_write(EventType.run_ended(status), data, "run event"),
        ]

    async def load_results(self) -> None:
        """Read the results of the run's done steps (for items run outside its execution)."""
        await self._states()

    async def _states(self) -> tuple[list[str], list[StepState]]:
        """The run's step names and states; done steps' results go to ``results``."""
        records = await self.store.get_steps(self.run_id)
        for rec in records:
            if rec.status in _DONE:
                self._results[rec.name] = rec.output
        return [r.name for r in records], [
            StepState(r.position, r.status, r.generation, r.refresh, r.attempts) for r in records
        ]

    async def execute(self) -> RunStatus:
        """Run the steps not yet done; returns the run's final status."""
        names, records = await self._states()
        specs = self.flow.steps
        if self.taken_over and self.run.crashes >= self.engine.settings.max_crashes:
            return await self._crashed_too_often(names, records)
        if names != [s.name for s in specs]:
            error = {
                "type": "FlowChanged",
                "message": (
                    f"flow {self.flow.name!r} now has steps {[s.name for s in specs]}, but the run "
                    f"was created with {names}; start a new run"
                ),
            }
            await self.commit(self._end_writes(RunStatus.FAILED, error))
            return RunStatus.FAILED
        if self.cancel_requested:
            self.event(EventType.LOG, {"level": "info", "message": "cancel requested"})
        partial = any(rec.status is StepStatus.PARTIAL for rec in records)
        todo = [i for i, rec in enumerate(records) if rec.status not in _DONE]
        self.saved("saved_by_checkpoint", len(records) - len(todo))
        runners = [_runner(spec.kind) for spec in specs]
        now = [self.inline_sync and spec.quick for spec in specs]
        writes: list[Write] = []
        try:
            if todo:
                # Queued, not committed on its own: it goes with the next commit (at the
                # latest the step's checkpoint); a crash before that leaves it pending.
                self.check_cancel()
                self.outbox.add([self._start_write(specs[todo[0]], todo[0])])
            for n, i in enumerate(todo):
                spec = specs[i]
                self.step_at = i
                outcome = (
                    _steps.run_now(self, spec, records[i])
                    if now[i]
                    else await runners[i](self, spec, records[i])
                )
                _faults.point("after_step_work")
                if outcome.status not in _DONE:
                    await self.commit(
                        [
                            *outcome.writes,
                            self._end_write(spec, i, outcome),
                            *self._end_writes(RunStatus.FAILED, outcome.error, spec.name),
                        ]
                    )
                    return RunStatus.FAILED
                self._results[spec.name] = outcome.value
                if outcome.status is StepStatus.PARTIAL:
                    partial = True
                following = todo[n + 1] if n + 1 < len(todo) else None
                writes = [*outcome.writes, self._end_write(spec, i, outcome)]
                if following is None:
                    if self.cancel_requested:  # too late: nothing is left to stop
                        self.event(EventType.LOG, {"level": "warning", "message": _LATE_CANCEL})
                    break
                if self.cancel_requested:
                    await self.commit(writes)
                    raise Stop
                if self.draining:  # the worker stops: this checkpoint, then the release
                    await self.commit(writes)
                    raise asyncio.CancelledError
                # The step's checkpoint, its event and the next step's start: one commit.
                await self.commit([*writes, self._start_write(specs[following], following)])
                _faults.point("after_step_checkpoint")
            status = RunStatus.PARTIAL if partial else RunStatus.SUCCEEDED
            _faults.point("before_run_end")
            await self.commit(writes + self._end_writes(status))
            return status
        except Stop:
            return await self._cancelled()

    async def resources_failed(self, exc: Exception) -> RunStatus:
        """The flow's resources could not be opened: the run fails before any step, resumable."""
        error = {**error_of(exc), "where": "resources"}
        error["message"] = f"opening flow {self.flow.name!r}'s resources: {error['message']}"
        await self.commit(self._end_writes(RunStatus.FAILED, error))
        return RunStatus.FAILED

    def _start_write(self, spec: StepSpec, position: int) -> Write:
        return StartStep(position, _time.now(), _started_data(spec.name, spec.kind))

    def _end_write(self, spec: StepSpec, position: int, outcome: Outcome) -> Write:
        """The step's end, its event and (when it succeeded) its checkpoint."""
        if outcome.data or outcome.error is not None:
            data: dict[str, Any] = {"step": spec.name, **(outcome.data or {})}
            if outcome.error is not None:
                data["error"] = outcome.error
            text = encode(data, "step event")
        else:
            text = _step_data(spec.name)
        error = None if outcome.error is None else encode(outcome.error, "error")
        return EndStep(position, outcome.status, _time.now(), outcome.output, error, text)

    async def _crashed_too_often(self, names: list[str], records: list[StepState]) -> RunStatus:
        """The run's process was lost ``max_crashes`` times: fail it instead of running a
        step that may kill the next process too."""
        running = next((r for r in records if r.status is StepStatus.RUNNING), None)
        where = None if running is None else names[running.position]
        crashes = self.run.crashes
        error = {
            "type": "Crashed",
            "kind": "crashed",
            "message": (
                f"the run's process was lost {crashes} time{'s' if crashes != 1 else ''}"
                + (f" while in step {where!r}" if where else "")
                + "; find what kills it (memory, a native crash, a signal), then "
                f"`regen retry {self.run_id}`"
            ),
        }
        writes = self._end_writes(RunStatus.FAILED, error, where, automatic=False)
        if running is not None and where is not None:  # the step it kept dying in
            text = encode({"step": where, "error": error}, "step event")
            failed = EndStep(
                running.position, StepStatus.FAILED, _time.now(), None, encode(error, "error"), text
            )
            writes.insert(0, failed)
        await self.commit(writes)
        return RunStatus.FAILED

    async def _cancelled(self) -> RunStatus:
        at = _time.now()
        await self.commit(
            [
                EndRun(
                    RunStatus.CANCELLED,
                    at,
                    encode({"type": "Cancelled", "message": "cancelled on request"}, "error"),
                    close_steps=True,
                ),
                event_write(EventType.RUN_CANCELLED, {}, "run event"),
            ]
        )
        return RunStatus.CANCELLED

    async def interrupted(self, *, release: bool) -> None:
        """The execution was interrupted (Ctrl-C, shutdown): give the run back to the queue
        (``release``) or leave it ``failed`` and resumable by a retry."""
        lease = self.lease
        if self.lost or not isinstance(lease, Lease):
            return
        try:
            if release:
                await self.outbox.flush()
                await self.store.release(lease, _time.now())
            else:
                await self.outbox.commit(self._interrupt_writes())
        except Exception:
            logger.warning(
                "regen: could not record the interruption of run %s",
                self.run_id,
                exc_info=True,
                extra={"run_id": self.run_id},
            )

    def _interrupt_writes(self) -> list[Write]:
        """The run ``failed``, and the step it was in too: a retry resumes from there."""
        error = {"type": "Interrupted", "message": "the run was interrupted; retry resumes it"}
        at = _time.now()
        writes: list[Write] = []
        if self.step_at is not None:
            name = self.flow.steps[self.step_at].name
            text = encode({"step": name, "error": error}, "step event")
            failed = EndStep(
                self.step_at, StepStatus.FAILED, at, None, encode(error, "error"), text
            )
            writes.append(failed)
        return [
            *writes,
            EndRun(RunStatus.FAILED, at, encode(error, "error")),
            event_write(EventType.RUN_FAILED, {"error": error}, "run event"),
        ]

    async def crashed(self, exc: BaseException) -> None:
        """An unexpected error in the engine itself: record the run as failed."""
        if self.lost:
            return
        try:
            await self.outbox.commit(self._end_writes(RunStatus.FAILED, error_of(exc)))
        except Exception:
            logger.warning(
                "regen: could not record the failure of run %s",
                self.run_id,
                exc_info=True,
                extra={"run_id": self.run_id},
            )


@functools.cache
def _runner(kind: str) -> Callable[[Execution, StepSpec, StepState], Awaitable[Outcome]]:
    """How a step of ``kind`` runs."""
    from regen.engine import _map, _stream  # noqa: PLC0415 - they import this module

    runners = {"map": _map.run_map, "stream": _stream.run_stream, "step": _steps.run_plain}
    return runners[kind]


@functools.cache
def _started_data(name: str, kind: str) -> str:
    return encode({"step": name, "kind": kind}, "step event")


@functools.cache
def _step_data(name: str) -> str:
    return encode({"step": name}, "step event")
