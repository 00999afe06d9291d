"""Seed 004's Django view, on regen: the stage's events as Server-Sent Events.

Serve it under ASGI (``django.core.asgi.get_asgi_application()`` with uvicorn, daphne…):
the view is async and streams while the images are generated. This module is also a
URLconf (``ROOT_URLCONF = "examples.storyboard.django_views"``), or include its
``urlpatterns`` in yours. Every event has an ``id:`` (``RUN:SEQ``); a client reconnecting
with ``Last-Event-ID`` continues the same run where it left off (see ``resume.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.urls import path

from examples.storyboard import resume
from examples.storyboard.events import SSE_CONTENT_TYPE, SSE_HEADERS
from examples.storyboard.processor import Text2ImageStageProcessor
from examples.storyboard.records import IMAGE_FILE_ROUTE


def _ids(request: HttpRequest) -> list[str] | None:
    raw = request.GET.get("storyboard_ids")
    return None if raw is None else [part for part in raw.split(",") if part]


def _streaming(events: AsyncIterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type=SSE_CONTENT_TYPE)
    for name, value in SSE_HEADERS.items():
        response[name] = value  # Cache-Control: no-cache, X-Accel-Buffering: no
    return response


async def generate_images_stream(request: HttpRequest, project_id: str) -> HttpResponse:
    """SSE流式生成图片: ``GET projects/<id>/images/stream[?storyboard_ids=a,b]``; with
    ``Last-Event-ID``, that run's stream continues instead."""
    storyboard_ids = _ids(request)
    last_event_id = request.headers.get("Last-Event-ID")
    try:
        resume.parse_event_id(last_event_id)
    except resume.BadEventId as exc:
        return HttpResponseBadRequest(str(exc))

    async def event_stream() -> AsyncIterator[str]:
        app = Text2ImageStageProcessor().app
        async for tagged in resume.project_events(app, project_id, storyboard_ids, last_event_id):
            yield resume.sse(tagged)  # id: RUN:SEQ, then data: {json}

    return _streaming(event_stream())


async def run_events_stream(request: HttpRequest, run_id: str) -> HttpResponse:
    """A stage run's events again, after ``Last-Event-ID`` (or ``?after=SEQ``)."""
    try:
        after = int(request.GET.get("after", "0") or 0)
        start = resume.resume_after(run_id, request.headers.get("Last-Event-ID"), after)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))

    async def event_stream() -> AsyncIterator[str]:
        app = Text2ImageStageProcessor().app
        async for tagged in resume.run_events(app, run_id, start):
            yield resume.sse(tagged)

    return _streaming(event_stream())


async def image_file(request: HttpRequest, image_id: str) -> HttpResponse:
    """An image's bytes (a record's ``image_url``: ``images/<id>/file``)."""
    found = await sync_to_async(Text2ImageStageProcessor().app.image_file)(image_id)
    if found is None:
        raise Http404(f"no image file for {image_id}")
    data, media_type = found
    return HttpResponse(data, content_type=media_type)


urlpatterns = [
    path("projects/<str:project_id>/images/stream", generate_images_stream),
    path("runs/<str:run_id>/events", run_events_stream),
    path(IMAGE_FILE_ROUTE.lstrip("/").replace("{image_id}", "<str:image_id>"), image_file),
]
