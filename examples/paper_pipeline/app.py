"""The app: seed 003's pipeline run by day on regen's engine, with retries, a lock per day,
the task record and checkpoint retention.

    async with PaperPipeline.open() as app:     # a real provider, or the simulator
        run = await app.run("2025-12-29")       # task_publish_20251229, one run per day
        if run.status == "failed":
            run = await app.retry("task_publish_20251229", from_step="render_images")
        print(await app.record("task_publish_20251229"))
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from examples.paper_pipeline.config import Config
from examples.paper_pipeline.pipeline import flow, task_id
from examples.paper_pipeline.resources import Resources, open_resources, outbox_for
from examples.paper_pipeline.tasks import CheckpointManager, task_record
from regen import Policy, RegenError
from regen.engine import Engine, Event, ParamsError, Run, RunNotFound, RunStatus
from regen.providers import OpenAIProvider
from regen.store import GcCounts

#: Called with each event of a run as it is written (the CLI prints them).
Progress = Callable[[Event], None]


async def _watch(engine: Engine, run_id: str, after: int, progress: Progress) -> None:
    async for event in engine.events(run_id, after=after, follow=True, poll=0.1):
        progress(event)


class TaskNotFound(RegenError):
    """No run of the pipeline for the task id, run id or day asked for."""


class TaskExpired(RegenError):
    """The day's run failed and its checkpoints were cleaned up: it cannot be resumed."""


class NothingToFail(RegenError):
    """``PAPER_PIPELINE_FAIL_STEP`` is set, but the day's task already succeeded: nothing
    runs, so nothing would fail."""


def parse_day(text: str | dt.date | None) -> dt.date:
    """``YYYY-MM-DD`` or ``YYYYMMDD`` (today when ``None``)."""
    if text is None:
        return dt.date.today()
    if isinstance(text, dt.date):
        return text
    for form in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, form).date()
        except ValueError:
            continue
    raise ParamsError(f"day {text!r}: expected YYYY-MM-DD or YYYYMMDD")


class PaperPipeline:
    """Seed 003's pipeline: runs, retries, the task record and clean-up.

    ``provider``: the OpenAI-compatible adapter the steps call (``None`` for a read-only
    app: ``show``, ``gc``). ``image_policy``: attempts per image (default: the provider's).
    Data lives under ``config.home``: regen's store and artifacts, and the outbox.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        provider: OpenAIProvider | None = None,
        image_policy: Policy | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.config = config or Config.from_env()
        self.engine = engine or Engine(home=self.config.home, settings=self.config.settings())
        self.engine.register(flow)
        self.outbox = outbox_for(self.config)
        #: What this app's executions give the steps (``ctx.resources``).
        self.resources = Resources(provider, self.outbox, image_policy, self.config.fail_step)
        #: Retries the app made that regen logs as manual ones (see ``retries.py``).
        self.checkpoints = CheckpointManager(self.engine, flow.name)

    def __repr__(self) -> str:
        return f"PaperPipeline({self.engine!r})"

    def close(self) -> None:
        """Close the engine (its store and threads)."""
        self.engine.close()

    def __enter__(self) -> PaperPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        config: Config | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        execute: bool = True,
    ) -> AsyncIterator[PaperPipeline]:
        """The app with its provider, chosen as the flow chooses its own
        (:func:`~examples.paper_pipeline.resources.open_resources`): the real one when
        ``OPENAI_API_KEY`` (or ``OPENAI_BASE_URL``) is set, else a simulator started for as
        long as the app is open. ``execute=False`` opens it without a provider (to read
        and clean up)."""
        env = os.environ if environ is None else environ
        chosen = config or Config.from_env(env)
        with cls(chosen) as app:
            if not execute:
                yield app
                return
            async with open_resources(chosen, env, state=app.engine.provider_state) as resources:
                app.resources = resources
                yield app

    # --- finding tasks ---------------------------------------------------------------------------

    async def find(self, task: str | dt.date | None = None) -> Run:
        """The run for a task id (``task_publish_YYYYMMDD``), a run id, or a day
        (``YYYY-MM-DD``; today when ``None``)."""
        key: str | None
        if isinstance(task, str) and task.startswith("task_publish_"):
            key = task
        else:
            if isinstance(task, str):
                with contextlib.suppress(RunNotFound):
                    named = await self.engine.get_run(task)
                    if named.flow == flow.name:
                        return named
            try:
                key = task_id(parse_day(task))
            except ParamsError:
                key = None
        run = None if key is None else await self.engine.find_run(flow, key)
        if run is None:
            recent = [
                r.business_key or r.id for r in await self.engine.list_runs(flow=flow.name, limit=5)
            ]
            raise TaskNotFound(
                f"no paper_pipeline task {task or key!r} (give a task id "
                "task_publish_YYYYMMDD, a run id or a day); recent tasks: "
                f"{', '.join(recent) or 'none'}"
            )
        return run

    # --- running ---------------------------------------------------------------------------------

    async def _last_seq(self, run_id: str | None) -> int:
        last = 0
        while run_id is not None and (page := await self.engine.read_events(run_id, last, 1000)):
            last = page[-1].seq
        return last

    async def _execute(self, run: Run, after: int, progress: Progress | None) -> Run:
        watcher = (
            None
            if progress is None
            else asyncio.create_task(_watch(self.engine, run.id, after, progress))
        )
        try:
            # Through its automatic retries, with this app's provider and outbox; one that
            # another process executes is followed, and taken over if that process dies.
            run = await self.engine.execute(run.id, follow=True, resources=self.resources)
        finally:
            if watcher is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(watcher), 2.0)
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        return run

    async def run(
        self,
        day: str | dt.date | None = None,
        *,
        count: int = 3,
        feed: str | None = None,
        progress: Progress | None = None,
    ) -> Run:
        """Run the day's pipeline to its end (through automatic retries).

        The day's task id is the run's business key: a second start of the same day, in
        this process or another, gets the same run — waits for it while it runs, returns
        it once it succeeded, resumes it from its failed step if it failed.
        """
        chosen = parse_day(day)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ParamsError(f"count={count!r}: expected a whole number ≥ 1")
        feed_path = feed if feed is not None else (str(self.config.feed or ""))
        existing = await self.engine.find_run(flow, task_id(chosen))
        after = await self._last_seq(None if existing is None else existing.id)
        started = await self.engine.start(
            flow,
            {"day": chosen.isoformat(), "count": count, "feed": feed_path},
            key=task_id(chosen),
            max_retries=self.config.max_retries,
            retry_delay=self.config.auto_retry_delay_seconds,
        )
        run = started.run
        if self.config.fail_step and not started.created and run.status is RunStatus.SUCCEEDED:
            step, when = self.config.fail_step
            raise NothingToFail(
                f"PAPER_PIPELINE_FAIL_STEP={step}{':after' if when == 'after' else ''} has "
                f"nothing to fail: {task_id(chosen)} already succeeded (run {run.id}) and is "
                "not run again. Pick a day without a task (--day), or run the step again "
                f"with `retry {task_id(chosen)} --from {step}`"
            )
        if run.status is RunStatus.FAILED and run.checkpoints_expired:
            raise TaskExpired(
                f"{task_id(chosen)} failed and its checkpoints were removed by the "
                "CHECKPOINT_RETENTION_HOURS clean-up: it can no longer be resumed. "
                f"`clear {task_id(chosen)}` forgets it; the day's next `run` then starts "
                f"a new task from {flow.steps[0].name}"
            )
        return await self._execute(run, after, progress)

    async def retry(
        self,
        task: str | dt.date | None = None,
        *,
        from_step: str | None = None,
        progress: Progress | None = None,
    ) -> Run:
        """Retry a failed task from its failed step, or from ``from_step`` (that step and
        every later one run again; earlier checkpoints are kept), and run it to its end.

        Refused (:class:`InvalidTransition`) while the task runs or is queued, once it was
        cancelled, and once its checkpoints expired.
        """
        run = await self.find(task)
        after = await self._last_seq(run.id)
        run = await self.queue_retry(run.id, from_step=from_step)
        return await self._execute(run, after, progress)

    async def queue_retry(
        self, task: str | dt.date | None = None, *, from_step: str | None = None
    ) -> Run:
        """Queue a retry of a task (as :meth:`retry`) without executing it: the run as
        queued, for :meth:`execute` here or any worker."""
        run = await self.find(task)
        if from_step is not None:
            flow.step_named(from_step)  # an unknown name is refused with the step list
        return await self.engine.retry(run.id, from_step=from_step)

    async def execute(self, run_id: str) -> Run:
        """Execute a queued run of the pipeline here, with this app's provider, to its end
        (through automatic retries)."""
        return await self._execute(await self.engine.get_run(run_id), 0, None)

    # --- reading and cleaning up ---------------------------------------------------------------

    async def record(self, task: str | dt.date | None = None) -> dict[str, Any]:
        """The seed's task record (``data/tasks.json`` entry) of a task."""
        return await self._record((await self.find(task)).id)

    async def records(self, limit: int = 20) -> list[dict[str, Any]]:
        """Recent tasks' records, newest first (the seed's ``data/tasks.json``)."""
        return [
            await self._record(r.id)
            for r in await self.engine.list_runs(flow=flow.name, limit=limit)
        ]

    async def _record(self, run_id: str) -> dict[str, Any]:
        return task_record(await self.engine.detail(run_id))

    async def gc(self, now: float | None = None) -> GcCounts:
        """Clean up: checkpoints of failed runs older than ``CHECKPOINT_RETENTION_HOURS``
        are deleted (those tasks are no longer resumable), and older data by regen's
        retention settings."""
        return await self.engine.gc(now)
