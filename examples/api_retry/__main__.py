"""Run seed 002's usage examples: ``python -m examples.api_retry``.

Prints the seed's log lines for a call that times out once and then succeeds, a smart
retry that refuses a 4xx, and a wrapped function.
"""

from __future__ import annotations

import asyncio

import regen
from examples.api_retry import seed_logs
from examples.api_retry.api_retry import (
    execute_with_retry,
    execute_with_smart_retry,
    with_retry,
)


class HttpError(Exception):
    """An HTTP error as a typical API client raises it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status


async def main() -> None:
    seed_logs.install()
    calls = 0

    async def generate_art_photo() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("网络连接超时")
        return "task-001"

    with regen.test_mode():  # the demo skips the real 1 s backoff
        task_id = await execute_with_retry(
            lambda: generate_art_photo(),  # noqa: PLW0108 - the seed's `() => someApiFunction()`
            max_retries=1,
            timeout=30000,
            operation_name="生成艺术照",
            on_retry=lambda attempt, error: print(f"重试第 {attempt} 次，错误: {error}"),
        )
        print("result:", task_id)

        async def pay() -> None:
            raise regen.Permanent("参数错误: out_trade_no 缺失", status=400)

        try:
            await execute_with_smart_retry(pay, operation_name="微信支付")
        except regen.Permanent as error:
            print("not retried:", error)

        statuses = iter(["RUNNING", "SUCCEEDED"])
        get_task_status = with_retry(lambda task: next(statuses), operation_name="任务状态查询")
        print("status:", get_task_status("task-001"), get_task_status("task-001"))


if __name__ == "__main__":
    asyncio.run(main())
