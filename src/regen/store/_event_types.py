"""Every event type regen writes to a run's log, by name.

Apps add types of their own (``ctx.emit("summary", …)``); these are the engine's. The
values are the strings on the wire: ``EventType.CHUNK == "chunk"``.
"""

from __future__ import annotations

import enum
import functools


class EventType(enum.StrEnum):
    """The types of events regen itself appends to a run's log."""

    RUN_QUEUED = "run.queued"
    RUN_STARTED = "run.started"
    RUN_SUCCEEDED = "run.succeeded"
    RUN_PARTIAL = "run.partial"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    STEP_STARTED = "step.started"
    STEP_SUCCEEDED = "step.succeeded"
    STEP_PARTIAL = "step.partial"
    STEP_FAILED = "step.failed"
    STEP_SKIPPED = "step.skipped"
    ITEM_STARTED = "item.started"
    ITEM_SUCCEEDED = "item.succeeded"
    ITEM_GIVEN_UP = "item.given_up"
    ITEM_SKIPPED = "item.skipped"
    ATTEMPT_FAILED = "attempt.failed"
    PROGRESS = "progress"
    CHUNK = "chunk"
    STREAM_RESET = "stream.reset"
    LOG = "log"

    @classmethod
    @functools.cache
    def run_ended(cls, status: str) -> EventType:
        """The event that ends a run with ``status`` (``run.succeeded``, …)."""
        return cls(f"run.{status}")

    @classmethod
    @functools.cache
    def item_ended(cls, status: str) -> EventType:
        """The event that ends an item with ``status`` (``item.given_up``, …)."""
        return cls(f"item.{status}")

    @classmethod
    @functools.cache
    def step_ended(cls, status: str) -> EventType:
        """The event that ends a step with ``status`` (``step.failed``, …)."""
        return cls(f"step.{status}")


#: Event types only the engine writes; a step's ``ctx.emit`` may not use them.
RESERVED_PREFIXES = ("run.", "step.", "item.")
