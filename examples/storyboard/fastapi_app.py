"""The same stage over FastAPI: SSE routes, plus JSON for records, retries and image bytes.

Every streamed event has an ``id:`` (``RUN:SEQ``); a client reconnecting with
``Last-Event-ID`` continues the same run where it left off (see ``resume.py``).

    uvicorn examples.storyboard.fastapi_app:app

or mount ``create_app()`` (or include ``create_app().router``) in your own app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import Response, StreamingResponse

from examples.storyboard import resume
from examples.storyboard.events import SSE_CONTENT_TYPE, SSE_HEADERS
from examples.storyboard.processor import Text2ImageStageProcessor
from examples.storyboard.records import IMAGE_FILE_ROUTE
from regen.engine import InvalidTransition, RunNotFound


def _ids(raw: str | None) -> list[str] | None:
    return None if raw is None else [part for part in raw.split(",") if part]


def _streaming(events: AsyncIterator[resume.Tagged]) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        async for tagged in events:
            yield resume.sse(tagged)

    return StreamingResponse(lines(), media_type=SSE_CONTENT_TYPE, headers=SSE_HEADERS)


def _checked(check: Any) -> Any:
    try:
        return check()
    except resume.BadEventId as exc:
        raise HTTPException(400, str(exc)) from None


def create_app(processor: Text2ImageStageProcessor | None = None) -> FastAPI:
    """A FastAPI app for the stage (on ``processor``'s app, by default the default one)."""
    stage = processor or Text2ImageStageProcessor()
    api = FastAPI(title="storyboard text-to-image (seed 004 on regen)")

    @api.get("/projects/{project_id}/images/stream")
    async def generate_images_stream(
        project_id: str,
        storyboard_ids: str | None = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """Generate the project's images (or those storyboards'), streaming the events; with
        ``Last-Event-ID``, continue that run's stream instead."""
        _checked(lambda: resume.parse_event_id(last_event_id))
        return _streaming(
            resume.project_events(stage.app, project_id, _ids(storyboard_ids), last_event_id)
        )

    @api.get("/runs/{run_id}/events")
    async def run_events_stream(
        run_id: str, after: int = 0, last_event_id: Annotated[str | None, Header()] = None
    ) -> StreamingResponse:
        """A run's events again, after ``Last-Event-ID`` (or ``?after=SEQ``), following it
        until it ends."""
        await _known(stage, run_id)
        start = _checked(lambda: resume.resume_after(run_id, last_event_id, after))
        return _streaming(resume.run_events(stage.app, run_id, start))

    @api.post("/runs/{run_id}/retry")
    async def retry(run_id: str) -> StreamingResponse:
        """Retry a failed or partial run (only what failed runs again), streaming it."""
        await _known(stage, run_id)
        try:
            after = await stage.retry(run_id)
        except InvalidTransition as exc:
            raise HTTPException(409, str(exc)) from exc
        return _streaming(resume.run_events(stage.app, run_id, after))

    @api.get("/runs/{run_id}")
    async def result(run_id: str) -> dict[str, Any]:
        """The run's stage result."""
        await _known(stage, run_id)
        outcome = await stage.result(run_id)
        return {
            "success": outcome.success,
            "data": outcome.data,
            "error": outcome.error,
            "message": outcome.message,
            "stage": outcome.stage,
            "run_id": run_id,
        }

    @api.get("/projects/{project_id}/images")
    async def images(project_id: str) -> list[dict[str, Any]]:
        """The project's image records, oldest first."""
        return [image.to_dict() for image in stage.app.records.images(project_id=project_id)]

    @api.get(IMAGE_FILE_ROUTE)
    def image_file(image_id: str) -> Response:
        """An image's bytes, from the app's artifacts (a record's ``image_url``)."""
        found = stage.app.image_file(image_id)
        if found is None:
            raise HTTPException(404, f"no image file for {image_id}")
        data, media_type = found
        return Response(data, media_type=media_type)

    return api


async def _known(stage: Text2ImageStageProcessor, run_id: str) -> None:
    try:
        await stage.app.engine.get_run(run_id)
    except RunNotFound:
        raise HTTPException(404, f"no run {run_id}") from None


app = create_app()
