"""Which events a replay sends: every one, except the chunks of discarded stream attempts.

A streaming step appends ``chunk`` events (``{step, attempt, text}``) as text arrives; when
an attempt fails (or its process died) a ``stream.reset`` naming that attempt follows, and
the next attempt streams afresh. A client following live has shown the failed attempt's
text and clears it on the reset. A client replaying the log never needs that text: its
chunks are skipped and the reset is still sent, so a client that had part of the attempt
before it reconnected clears it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from regen.engine import Event, EventType

#: A step's end that keeps its streamed text: no later reset reaches back past it.
_KEEPS_TEXT = frozenset({EventType.STEP_SUCCEEDED, EventType.STEP_PARTIAL})


def replayed(events: Sequence[Event]) -> list[Event]:
    """``events`` (in order) without the chunks that a later ``stream.reset`` of the same
    step and attempt discards; the resets themselves are kept."""
    pending: dict[tuple[object, object], list[int]] = {}
    dropped: set[int] = set()
    for index, event in enumerate(events):
        kind = event.type
        if kind == EventType.CHUNK:
            key = (event.data.get("step"), event.data.get("attempt"))
            pending.setdefault(key, []).append(index)
        elif kind == EventType.STREAM_RESET:
            key = (event.data.get("step"), event.data.get("attempt"))
            dropped.update(pending.pop(key, ()))
        elif kind in _KEEPS_TEXT:
            step = event.data.get("step")
            for key in [k for k in pending if k[0] == step]:
                del pending[key]
    if not dropped:
        return list(events)
    return [event for index, event in enumerate(events) if index not in dropped]
