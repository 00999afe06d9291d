"""Resumable SSE for the stage's streams: each event carries ``id: RUN:SEQ`` (its run and
its place in that run's durable log), and a client that reconnects with it (a browser's
EventSource sends ``Last-Event-ID`` by itself) gets only what followed, from the same run:
a reconnect never starts the stage again, and never repeats or skips an event.

On the wire an event is the seed's ``data: {json}`` line with an ``id:`` line before it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from examples.storyboard import events
from examples.storyboard.app import StoryboardApp
from examples.storyboard.validation import ValidationError

#: An event with the id a client resumes after (``None``: an answer not in the log).
Tagged = tuple[str | None, dict[str, Any]]


class BadEventId(ValueError):
    """A ``Last-Event-ID`` this app never sent."""


def event_id(run_id: str, seq: int) -> str:
    """The id of a run's event: ``RUN:SEQ``."""
    return f"{run_id}:{seq}"


def parse_event_id(value: str | None) -> tuple[str, int] | None:
    """``(run_id, seq)`` from a ``Last-Event-ID`` (``None`` when there is none)."""
    if value is None or not value.strip():
        return None
    run_id, _, seq = value.strip().rpartition(":")
    if not run_id or not seq.isdigit():
        raise BadEventId(f"Last-Event-ID {value[:80]!r} is not RUN:SEQ; reconnect without it")
    return run_id, int(seq)


def sse(tagged: Tagged) -> str:
    """One event on the wire: ``id: RUN:SEQ`` (when it has one), then the seed's line."""
    ident, event = tagged
    return (f"id: {ident}\n" if ident else "") + events.sse(event)


async def run_events(app: StoryboardApp, run_id: str, after: int = 0) -> AsyncIterator[Tagged]:
    """The run's events in the seed's vocabulary after ``after``, with their ids,
    following the run until it ends."""
    async for entry in app.engine.events(run_id, after=after, follow=True):
        event = events.from_log(entry)
        if event is not None:
            yield event_id(run_id, entry.seq), event


async def project_events(
    app: StoryboardApp,
    project_id: str,
    storyboard_ids: Sequence[str] | None,
    last_event_id: str | None,
) -> AsyncIterator[Tagged]:
    """The project's stage as a stream: resumed after ``last_event_id`` when given (the
    run it names), else started (or attached to, while it runs) and streamed from its
    start."""
    resume = parse_event_id(last_event_id)
    if resume is not None:
        async for tagged in run_events(app, *resume):
            yield tagged
        return
    try:
        run_id = await app.start(project_id, storyboard_ids)
    except ValidationError as exc:
        yield None, {"type": "error", **events.error(exc.message)}
        return
    app.launch(run_id)
    async for tagged in run_events(app, run_id):
        yield tagged


def resume_after(run_id: str, last_event_id: str | None, after: int) -> int:
    """Where ``/runs/{run_id}/events`` resumes: after the ``Last-Event-ID`` (an id of that
    run) or else after ``?after=``."""
    resume = parse_event_id(last_event_id)
    if resume is None:
        return max(after, 0)
    if resume[0] != run_id:
        raise BadEventId(f"Last-Event-ID {last_event_id!r} belongs to another run")
    return resume[1]
