"""Submit-and-poll: asynchronous task APIs (DashScope image tasks, photo and video jobs).

One submit plus its polling is ONE attempt of the caller's policy: polls are cheap and are
not attempts. A poll that fails transiently (a 429, a reset, a 5xx, a garbled reply) is
retried in place with its own backoff, keeping the task; a task still pending at the poll
deadline, or one the provider no longer knows, fails the attempt so the policy can submit a
new one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from regen.foundation import ConfigError, is_finite, is_whole
from regen.providers._errors import TaskFailed, TaskTimeout, TaskUnknown
from regen.retry import Failure, Kind, classify

logger = logging.getLogger("regen.providers")

H = TypeVar("H")
T = TypeVar("T")


class TaskState(enum.StrEnum):
    """Where an asynchronous task is: pending or running, or one of its final states."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"

    @property
    def final(self) -> bool:
        """Whether the task will not change any more."""
        return self not in (TaskState.PENDING, TaskState.RUNNING)

    @classmethod
    def parse(cls, value: str | TaskState | None) -> TaskState | None:
        """The state a provider's status word means (``"done"``, ``"in_queue"``, …), if known."""
        if isinstance(value, TaskState):
            return value
        if not isinstance(value, str):
            return None
        return _SYNONYMS.get(value.strip().lower().replace("-", "_").replace(" ", "_"))


_SYNONYMS: dict[str, TaskState] = {
    **dict.fromkeys(
        ("pending", "queued", "in_queue", "submitted", "waiting", "created", "not_started"),
        TaskState.PENDING,
    ),
    **dict.fromkeys(
        ("running", "processing", "in_progress", "generating", "started", "working"),
        TaskState.RUNNING,
    ),
    **dict.fromkeys(
        (
            "succeeded",
            "success",
            "successful",
            "succeed",
            "completed",
            "complete",
            "done",
            "finished",
        ),
        TaskState.SUCCEEDED,
    ),
    **dict.fromkeys(("failed", "failure", "fail", "error"), TaskState.FAILED),
    **dict.fromkeys(("canceled", "cancelled", "aborted"), TaskState.CANCELED),
    **dict.fromkeys(("unknown", "not_found", "expired"), TaskState.UNKNOWN),
}


@dataclass(frozen=True, slots=True)
class Polling:
    """How a task is polled.

    Polls start ``interval`` seconds apart and the gap grows by ``multiplier`` up to
    ``max_interval``. ``deadline`` bounds the polling of one task from its submission;
    past it the task counts as stuck (kind ``timeout``) and a retrying caller submits a new
    one. A failed poll waits ``error_wait`` (doubling up to ``max_error_wait``, or what the
    server's ``Retry-After`` asks) and polls again; more than ``max_errors`` failed polls in
    a row fail the attempt with the last poll's error.
    """

    interval: float = 1.0
    max_interval: float = 5.0
    multiplier: float = 1.5
    deadline: float = 300.0
    error_wait: float = 1.0
    max_error_wait: float = 10.0
    max_errors: int = 10

    def __post_init__(self) -> None:
        for name in ("interval", "max_interval", "deadline", "error_wait", "max_error_wait"):
            value = getattr(self, name)
            if not is_finite(value) or value <= 0:
                raise ConfigError(f"polling {name}={value!r}: expected a number of seconds > 0")
        if not is_finite(self.multiplier) or self.multiplier < 1:
            raise ConfigError(f"polling multiplier={self.multiplier!r}: expected a number ≥ 1")
        if self.max_interval < self.interval:
            raise ConfigError(
                f"polling max_interval={self.max_interval!r}: expected ≥ interval "
                f"({self.interval!r})"
            )
        errors = self.max_errors
        if not is_whole(errors) or errors < 0:
            raise ConfigError(f"polling max_errors={errors!r}: expected a whole number ≥ 0")


async def poll_until_done(
    poll: Callable[[], Awaitable[T]],
    state: Callable[[T], TaskState | str | None],
    *,
    polling: Polling | None = None,
    task_id: str | None = None,
    failed: Callable[[T, TaskState], BaseException] | None = None,
    provider: str | None = None,
) -> T:
    """Poll until the task succeeds; return the last poll's reply.

    ``poll()`` fetches the task once; ``state(reply)`` says where it is (a :class:`TaskState`
    or a status word such as ``"SUCCEEDED"``/``"in_queue"``/``"done"``). A ``FAILED`` or
    ``CANCELED`` task raises ``failed(reply, state)`` (default: :class:`TaskFailed`, kind
    ``server_error``, retried); ``UNKNOWN`` raises :class:`TaskUnknown` (``bad_response``,
    submit again); a task pending at the deadline raises :class:`TaskTimeout` (``timeout``).
    """
    chosen = polling or Polling()
    started = time.monotonic()
    interval = chosen.interval
    errors = 0
    error_wait = chosen.error_wait
    last_error: BaseException | None = None
    unrecognised: set[str] = set()
    name = f"task {task_id}" if task_id else "task"
    while True:
        try:
            reply = await poll()
            raw = state(reply)
        except Exception as exc:
            failure = classify(exc)
            errors += 1
            if not failure.retry or errors > chosen.max_errors:
                raise
            last_error = exc
            wait = failure.retry_after if failure.retry_after is not None else error_wait
            error_wait = min(error_wait * 2, chosen.max_error_wait)
            logger.info(
                "%s: poll failed (%s), polling again in %.2f s",
                name,
                failure.kind,
                wait,
                extra={
                    "task_id": task_id,
                    "kind": str(failure.kind),
                    "wait": wait,
                    "provider": provider,
                    "outcome": "poll_failed",
                },
            )
        else:
            errors, error_wait, last_error = 0, chosen.error_wait, None
            current = TaskState.parse(raw)
            if current is None:
                current = TaskState.RUNNING
                if str(raw) not in unrecognised:
                    unrecognised.add(str(raw))
                    logger.warning(
                        "%s: unrecognised status %r, treated as running",
                        name,
                        raw,
                        extra={"task_id": task_id, "status": str(raw)},
                    )
            if current is TaskState.SUCCEEDED:
                return reply
            if current in (TaskState.FAILED, TaskState.CANCELED):
                if failed is not None:
                    raise failed(reply, current)
                raise TaskFailed(
                    f"{name} ended {current}",
                    Failure.of(Kind.SERVER_ERROR, f"task_{current.lower()}"),
                    task_id=task_id,
                    provider=provider,
                )
            if current is TaskState.UNKNOWN:
                raise TaskUnknown(
                    f"{name} is unknown to the provider (expired or invalid id)",
                    Failure.of(Kind.BAD_RESPONSE, "task_unknown"),
                    task_id=task_id,
                    provider=provider,
                )
            wait = interval
            interval = min(interval * chosen.multiplier, chosen.max_interval)
        left = chosen.deadline - (time.monotonic() - started)
        if left <= 0:
            if last_error is not None:
                raise last_error
            raise TaskTimeout(
                f"{name} still pending after the {chosen.deadline:g}s poll deadline",
                Failure.of(Kind.TIMEOUT, "task_stuck"),
                task_id=task_id,
                provider=provider,
            )
        await asyncio.sleep(min(wait, left))


async def submit_and_poll(
    submit: Callable[[], Awaitable[H]],
    poll: Callable[[H], Awaitable[T]],
    state: Callable[[T], TaskState | str | None],
    *,
    polling: Polling | None = None,
    task_id: Callable[[H], str] | None = None,
    failed: Callable[[T, TaskState], BaseException] | None = None,
    provider: str | None = None,
) -> T:
    """Submit a task and poll it to success: one attempt (wrap it in a policy to resubmit).

    ``submit()`` returns a handle (often the task id) that ``poll(handle)`` fetches;
    ``task_id(handle)`` names the task in logs and errors. See :func:`poll_until_done`.
    """
    handle = await submit()
    ident = (
        task_id(handle) if task_id is not None else (handle if isinstance(handle, str) else None)
    )
    return await poll_until_done(
        lambda: poll(handle),
        state,
        polling=polling,
        task_id=ident,
        failed=failed,
        provider=provider,
    )
