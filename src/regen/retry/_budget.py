"""The time left to the current attempt, readable from inside the retried call.

A retried function (or the HTTP client it calls) reads :func:`remaining` to bound its own
timeouts by what the attempt has left, and :func:`phase_timeout` for a named phase such
as ``"download"``. Outside a retried call both return ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from regen.retry import _state


@dataclass(frozen=True, slots=True)
class Budget:
    """The current attempt's end (on the monotonic clock) and its named phase timeouts."""

    ends_at: float | None
    phases: Mapping[str, float]
    attempt: int = 1
    idempotency_key: str | None = None


current: ContextVar[Budget | None] = ContextVar("regen_retry_budget", default=None)


def remaining() -> float | None:
    """Seconds left in the current attempt, or ``None`` when it has no timeout."""
    budget = current.get()
    if budget is None or budget.ends_at is None:
        return None
    return max(0.0, budget.ends_at - _state.clock.monotonic())


def phase_timeout(name: str, default: float | None = None) -> float | None:
    """The timeout for phase ``name`` of the current attempt, bounded by what it has left.

    ``default`` applies when the policy names no such phase.
    """
    budget = current.get()
    chosen = default if budget is None else budget.phases.get(name, default)
    left = remaining()
    if chosen is None:
        return left
    return chosen if left is None else min(chosen, left)


def attempt_number() -> int | None:
    """The number of the attempt running now (1 for the first), or ``None`` outside one."""
    budget = current.get()
    return None if budget is None else budget.attempt


def idempotency_key() -> str | None:
    """The idempotency key the current call carries, if any."""
    budget = current.get()
    return None if budget is None else budget.idempotency_key
