"""``Text2ImageStageProcessor``: seed 004's processor, its calls kept, running on regen.

    processor = Text2ImageStageProcessor()
    result = await processor.process(PipelineContext(project_id=pid))        # StageResult
    async for event in processor.process_stream(pid):                         # SSE events
        ...
    async for event in processor.process_stream(pid, storyboard_ids=failed):  # only those
        ...

Every call starts a durable run of the stage flow (or, while the project's stage runs,
attaches to that run); ``stream_run`` re-attaches to a run's
events (from any sequence number) and ``retry_stream`` resumes a failed or partial run,
regenerating only what failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from examples.storyboard import events
from examples.storyboard.app import StoryboardApp, default_app
from examples.storyboard.models import IMAGE_STAGE, PipelineContext, StageResult
from examples.storyboard.validation import ValidationError


class Text2ImageStageProcessor:
    """The text-to-image stage of a project's pipeline (``stage_type = "image_generation"``).

    Without ``app``, it works on :func:`default_app` (``$STORYBOARD_HOME``).
    """

    stage_type = IMAGE_STAGE
    name = "文生图"

    def __init__(self, app: StoryboardApp | None = None) -> None:
        self._app = app

    @property
    def app(self) -> StoryboardApp:
        """The app whose data directory this processor works on."""
        return self._app if self._app is not None else default_app()

    async def process(self, context: PipelineContext) -> StageResult:
        """Run the stage to its end; the result is also put in ``context.results``."""
        app = self.app
        run_id = await app.start(context.project_id, context.storyboard_ids)
        await app.launch(run_id)
        async for _ in app.events(run_id):  # to its end, wherever it executes
            pass
        result = await app.result(run_id)
        context.results[self.stage_type] = result
        return result

    async def process_stream(
        self,
        project_id: str,
        storyboard_ids: Sequence[str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Run the stage, yielding its events (``{"type": …, …}``) as they happen.

        The run executes in the background: a client that goes away does not stop it,
        and :meth:`stream_run` picks its events up again. A call while the project's stage
        runs for the same storyboards attaches to that run (its events from the start); for
        other storyboards it yields one ``error`` event (``stage_busy``).
        """
        app = self.app
        try:
            run_id = await app.start(project_id, storyboard_ids)
        except ValidationError as exc:
            yield {"type": "error", **events.error(exc.message)}
            return
        app.launch(run_id)
        async for event in app.events(run_id):
            yield event

    async def stream_run(self, run_id: str, *, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """A run's events from the start (or after sequence number ``after``), following it
        until it ends."""
        async for event in self.app.events(run_id, after=after):
            yield event

    async def retry(self, run_id: str) -> int:
        """Retry a failed or partial run in the background (only the storyboards that
        failed are generated again); returns the sequence number its new events follow.

        Refused (``InvalidTransition``) for a run that is queued, running or succeeded.
        """
        app = self.app
        after = await _last_seq(app, run_id)
        await app.retry(run_id)
        app.launch(run_id)
        return after

    async def retry_stream(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        """:meth:`retry`, then the retry's events."""
        after = await self.retry(run_id)
        async for event in self.app.events(run_id, after=after):
            yield event

    def failed_storyboard_ids(self, project_id: str) -> list[str]:
        """Storyboards whose latest image failed: pass them to :meth:`process_stream`."""
        return self.app.records.failed_storyboard_ids(project_id)

    async def result(self, run_id: str) -> StageResult:
        """A run's stage result (while it runs, its status is ``processing``)."""
        return await self.app.result(run_id)


async def _last_seq(app: StoryboardApp, run_id: str) -> int:
    last = 0
    while True:
        batch = await app.engine.read_events(run_id, after=last)
        if not batch:
            return last
        last = batch[-1].seq


class ProjectPipeline:
    """Stages run in order over one project (seed: ``pipeline.add_stage(processor)``)."""

    def __init__(self) -> None:
        self.stages: list[Text2ImageStageProcessor] = []

    def add_stage(self, stage: Text2ImageStageProcessor) -> ProjectPipeline:
        """Append a stage."""
        self.stages.append(stage)
        return self

    async def execute(
        self, project_id: str, storyboard_ids: Sequence[str] | None = None
    ) -> PipelineContext:
        """Run every stage; stops after a stage that did not succeed."""
        context = PipelineContext(
            str(project_id), None if storyboard_ids is None else list(storyboard_ids)
        )
        for stage in self.stages:
            result = await stage.process(context)
            if not result.success:
                break
        return context
