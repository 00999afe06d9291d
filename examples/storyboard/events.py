"""Seed 004's event vocabulary, read back from regen's event log, and its SSE wire format.

The flow emits the seed's events with ``ctx.emit`` into the run's durable event log,
next to regen's own (``run.*``, ``step.*``, ``item.*``, ``attempt.failed`` and the map
step's ``progress`` counts). A client sees only the seed's, with exactly its fields::

    stage_update   {stage: {id, status, stage_type, started_at}}
    info           {message}
    progress       {current, total, message, storyboard}
    image_generated {storyboard_id, image: {id, url, width, height}}
    warning        {message}
    error          {error, storyboard_id?}
    done           {message, data, stage}

On the wire each is one ``data: {json}\\n\\n`` line, the type inside the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from regen.engine import Event, EventType

#: The seed's event types, in the order a stage usually emits them.
EVENT_TYPES = ("stage_update", "info", "progress", "image_generated", "warning", "error", "done")
#: Headers of the seed's Django view (plus the content type).
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_CONTENT_TYPE = "text/event-stream"
# regen adds where an event came from (the step, the map item) to what a step emits.
_ADDED_BY_ENGINE = ("step", "item")


def from_log(event: Event) -> dict[str, Any] | None:
    """The seed's event for a log entry (``{"type": …, **fields}``), or ``None`` for
    regen's own bookkeeping."""
    if event.type not in EVENT_TYPES:
        return None
    data = event.data
    if event.type == EventType.PROGRESS and "storyboard" not in data:
        return None  # the map step's own counts (current/total/succeeded/given_up)
    return {"type": event.type, **{k: v for k, v in data.items() if k not in _ADDED_BY_ENGINE}}


def sse(event: Mapping[str, Any]) -> str:
    """One event in the seed's wire format: ``data: {json}\\n\\n`` (UTF-8 kept as is)."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def stage_update(stage: Mapping[str, Any]) -> dict[str, Any]:
    return {"stage": dict(stage)}


def progress(storyboard: Mapping[str, Any], total: int, message: str) -> dict[str, Any]:
    return {
        "current": storyboard["position"],
        "total": total,
        "message": message,
        "storyboard": {
            "id": storyboard["id"],
            "sequence_number": storyboard["sequence_number"],
            "image_prompt": storyboard["image_prompt"],
        },
    }


def image_generated(
    storyboard_id: str, image_id: str, url: str | None, width: int | None, height: int | None
) -> dict[str, Any]:
    return {
        "storyboard_id": storyboard_id,
        "image": {"id": image_id, "url": url, "width": width, "height": height},
    }


def error(message: str, storyboard_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"error": message}
    if storyboard_id is not None:
        data["storyboard_id"] = storyboard_id
    return data


def done(message: str, data: Mapping[str, Any], stage: Mapping[str, Any]) -> dict[str, Any]:
    return {"message": message, "data": dict(data), "stage": dict(stage)}
