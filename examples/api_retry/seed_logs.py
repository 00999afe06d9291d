"""Seed 002's log lines, rendered from the fields of regen's structured retry logs.

regen logs each attempt with a stable English message and fields (``operation``,
``attempt``, ``max_attempts``, ``remaining``, ``wait_ms``, ``outcome``, ``error``); this
formatter turns them into the seed's ``[API重试] …`` lines.
"""

from __future__ import annotations

import logging


class SeedLogFormatter(logging.Formatter):
    """Formats ``regen.retry`` records the way seed 002's log example shows them."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        operation = fields.get("operation")
        outcome = fields.get("outcome")
        if operation is None or outcome is None:
            return super().format(record)
        head = f"[API重试] {operation} - "
        attempt, total = fields.get("attempt"), fields.get("max_attempts")
        if outcome == "started":
            return f"{head}第 {attempt} 次尝试 (最多 {total} 次)"
        if outcome == "failed":
            error = str(fields.get("error", "")).split(": ", 1)[-1]
            return f"{head}第 {attempt} 次尝试失败: {error}"
        if outcome == "retrying":
            return (
                f"{head}准备重试 (剩余 {fields['remaining']} 次机会)\n"
                f"{head}等待 {fields['wait_ms']}ms 后重试"
            )
        if outcome == "succeeded":
            return f"{head}第 {attempt} 次尝试成功"
        if outcome == "gave_up":
            # The seed counts retries, not attempts: the first attempt is no retry.
            retries = int(attempt) - 1 if isinstance(attempt, int) else attempt
            return f"{head}重试 {retries} 次后放弃"
        return super().format(record)


def install(level: int = logging.DEBUG) -> logging.Handler:
    """Print regen's retry logs to stderr in the seed's format."""
    handler = logging.StreamHandler()
    handler.setFormatter(SeedLogFormatter())
    logger = logging.getLogger("regen.retry")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
