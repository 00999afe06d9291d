"""Judging a failed attempt: its kind, whether another attempt is worth it, and the wait."""

from __future__ import annotations

from regen.foundation import mask_secrets
from regen.retry import _state
from regen.retry._attempts import Attempt
from regen.retry._classify import classify
from regen.retry._kinds import Kind
from regen.retry._policy import Policy

_UNRECOGNISED_KIND = Kind.UNKNOWN


def max_attempts(policy: Policy) -> int:
    cap = _state.max_attempts
    return policy.attempts if cap is None else min(policy.attempts, cap)


def _message(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return mask_secrets(f"{name}: {text}" if text else name)


def judge(
    policy: Policy, exc: BaseException, number: int, attempt_start: float, call_start: float
) -> Attempt:
    """Classify a failed attempt and decide the wait before the next one (``None``: stop)."""
    clock = _state.clock
    now = clock.monotonic()
    failure = None
    if policy.classifier is not None:
        failure = policy.classifier(exc)
    if failure is None:
        failure = classify(exc)
    retry = failure.retry
    reason = failure.reason
    if not retry and policy.retry_unknown and failure.kind is _UNRECOGNISED_KIND:
        retry = reason not in ("permanent", "gave_up")
    wait: float | None = None
    if retry and not policy.idempotent and policy.idempotency_key is None and failure.sent:
        retry, reason = False, "not_idempotent"
    if retry and number < max_attempts(policy):
        wait = policy.backoff(number)
        if failure.retry_after is not None:
            if failure.retry_after > policy.retry_after_max:
                wait, reason = None, "retry_after_too_long"
            else:
                wait = failure.retry_after
        deadline = policy.deadline
        if wait is not None and deadline is not None and (now - call_start) + wait >= deadline:
            wait, reason = None, "deadline"
    return Attempt(
        number=number,
        started_at=clock.wall() - (now - attempt_start),
        duration=now - attempt_start,
        kind=failure.kind,
        retry=retry,
        message=_message(exc),
        status=failure.status,
        reason=reason,
        wait=wait,
        error=exc,
    )
