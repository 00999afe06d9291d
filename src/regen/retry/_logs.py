"""The retry loop's log lines: a stable message with the attempt's fields in ``extra``."""

from __future__ import annotations

import logging
from typing import NoReturn

from regen.retry._attempts import Attempt
from regen.retry._errors import GiveUp
from regen.retry._judge import max_attempts
from regen.retry._policy import Policy

logger = logging.getLogger("regen.retry")
_DEBUG = logging.DEBUG


def log_failure(policy: Policy, attempt: Attempt, total: int) -> None:
    operation = policy.operation or "call"
    fields = {
        "operation": operation,
        "attempt": attempt.number,
        "max_attempts": total,
        "kind": str(attempt.kind),
        "status": attempt.status,
        "error": attempt.message,
    }
    logger.warning(
        "%s: attempt %d of %d failed (%s): %s",
        operation,
        attempt.number,
        total,
        attempt.kind,
        attempt.message,
        extra={**fields, "outcome": "failed"},
    )
    if attempt.wait is not None:
        left = total - attempt.number
        wait_ms = round(attempt.wait * 1000)
        logger.info(
            "%s: retrying in %d ms (%d attempts left)",
            operation,
            wait_ms,
            left,
            extra={**fields, "remaining": left, "wait_ms": wait_ms, "outcome": "retrying"},
        )


def log_start(policy: Policy, number: int, total: int) -> None:
    operation = policy.operation or "call"
    level = _DEBUG if number == 1 else logging.INFO
    if logger.isEnabledFor(level):
        logger.log(
            level,
            "%s: attempt %d of %d",
            operation,
            number,
            total,
            extra={
                "operation": operation,
                "attempt": number,
                "max_attempts": total,
                "outcome": "started",
            },
        )


def log_success(policy: Policy, number: int) -> None:
    operation = policy.operation or "call"
    level = _DEBUG if number == 1 else logging.INFO
    if logger.isEnabledFor(level):
        total = max_attempts(policy)
        logger.log(
            level,
            "%s: attempt %d of %d succeeded",
            operation,
            number,
            total,
            extra={
                "operation": operation,
                "attempt": number,
                "max_attempts": total,
                "outcome": "succeeded",
            },
        )


def give_up(policy: Policy, history: list[Attempt], exc: BaseException) -> NoReturn:
    operation = policy.operation or "call"
    last = history[-1]
    logger.error(
        "%s: gave up after %d attempts (%s): %s",
        operation,
        len(history),
        last.reason or last.kind,
        last.message,
        extra={
            "operation": operation,
            "attempt": last.number,
            "kind": str(last.kind),
            "reason": last.reason,
            "outcome": "gave_up",
        },
    )
    if policy.reraise:
        exc.attempts = tuple(history)  # type: ignore[attr-defined]
        raise exc
    raise GiveUp(policy.operation, history) from exc
