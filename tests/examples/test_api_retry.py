"""Seed 002's test checklist, run against its example built on regen."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from examples.api_retry.api_retry import (
    execute_with_retry,
    execute_with_smart_retry,
    seed_policy,
    with_retry,
)
from examples.api_retry.seed_logs import SeedLogFormatter

import regen
from regen.retry import FakeClock

ROOT = Path(__file__).resolve().parents[2]


class HttpError(Exception):
    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or f"HTTP {status}")
        self.status_code = status


class Calls:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture(autouse=True)
def clock() -> Iterator[FakeClock]:
    """Waits are recorded on a fake clock, never slept."""
    fake = FakeClock()
    with regen.test_mode(clock=fake):
        yield fake


def test_a_successful_call_is_not_retried() -> None:
    calls = Calls()
    assert execute_with_retry(calls) == "ok"
    assert calls.count == 1


def test_a_failed_call_is_retried_once() -> None:
    calls = Calls(RuntimeError("boom"))
    assert execute_with_retry(calls, max_retries=1) == "ok"
    assert calls.count == 2


def test_repeated_failures_throw_the_error() -> None:
    calls = Calls(RuntimeError("first"), RuntimeError("second"), RuntimeError("third"))
    with pytest.raises(RuntimeError, match="second"):
        execute_with_retry(calls, max_retries=1)
    assert calls.count == 2


async def test_a_timeout_triggers_a_retry() -> None:
    count = 0

    async def slow_then_fast() -> str:
        nonlocal count
        count += 1
        if count == 1:
            await asyncio.sleep(3600)
        return "ok"

    with regen.test_mode(clock=regen.retry.Clock()):
        assert await execute_with_retry(slow_then_fast, timeout=50) == "ok"
    assert count == 2


def test_the_retry_callback_gets_the_retry_number_and_error() -> None:
    seen: list[tuple[int, str]] = []
    calls = Calls(ConnectionResetError("reset"))
    execute_with_retry(calls, on_retry=lambda attempt, error: seen.append((attempt, str(error))))
    assert seen == [(1, "reset")]


def test_a_wrapped_function_retries() -> None:
    count = 0

    def generate_video(prompt: str, *, seconds: int) -> str:
        nonlocal count
        count += 1
        if count == 1:
            raise HttpError(503)
        return f"{prompt}:{seconds}s"

    wrapped = with_retry(generate_video, max_retries=1, timeout=30000, operation_name="生成视频")
    assert wrapped("cat", seconds=5) == "cat:5s"
    assert count == 2


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(104, "ECONNRESET"),
        TimeoutError("ETIMEDOUT"),
        OSError(-2, "ENOTFOUND"),  # resolved as a socket.gaierror in real life
        ConnectionRefusedError(111, "ECONNREFUSED"),
        HttpError(500),
        HttpError(502),
        HttpError(503),
        HttpError(429),
        RuntimeError("请求超时"),
        RuntimeError("upstream timeout"),
    ],
    ids=str,
)
def test_smart_retry_retries_retryable_errors(error: Exception) -> None:
    if isinstance(error, OSError) and error.errno == -2:
        error = socket.gaierror(socket.EAI_NONAME, "ENOTFOUND")
    calls = Calls(error)
    assert execute_with_smart_retry(calls) == "ok"
    assert calls.count == 2


@pytest.mark.parametrize(
    "error",
    [
        HttpError(400),
        HttpError(401),
        HttpError(403),
        HttpError(404),
        HttpError(408),  # regen alone retries it (a timeout): the seed throws every 4xx
        HttpError(409),  # regen alone retries it (OpenAI's lock conflict)
        HttpError(422),
        ValueError("余额不足"),
    ],
    ids=str,
)
def test_smart_retry_throws_other_errors_at_once(error: Exception) -> None:
    calls = Calls(error)
    with pytest.raises(type(error)):
        execute_with_smart_retry(calls)
    assert calls.count == 1


def test_the_seed_options_map_to_attempts_seconds_and_capped_backoff() -> None:
    policy = seed_policy(max_retries=1, timeout=30000)
    assert (policy.attempts, policy.timeout) == (2, 30)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


class RateLimited(HttpError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(429)
        self.headers = {"retry-after": str(retry_after_s)}


@pytest.mark.parametrize("run", [execute_with_retry, execute_with_smart_retry])
def test_a_429_waits_what_the_server_asks_within_the_seeds_5_s(
    run: Callable[..., object], clock: FakeClock
) -> None:
    calls = Calls(RateLimited(4))
    assert run(calls, max_retries=1) == "ok"
    assert (calls.count, clock.sleeps) == (2, [4])


@pytest.mark.parametrize("run", [execute_with_retry, execute_with_smart_retry])
def test_a_429_asking_for_more_than_the_seeds_5_s_is_thrown_at_once(
    run: Callable[..., object], clock: FakeClock
) -> None:
    calls = Calls(RateLimited(30))
    with pytest.raises(RateLimited):
        run(calls, max_retries=1)
    assert (calls.count, clock.sleeps) == (1, [])


def test_log_lines_follow_the_seed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="regen.retry")
    execute_with_retry(Calls(RuntimeError("网络连接超时")), operation_name="生成艺术照")
    formatter = SeedLogFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    assert lines == [
        "[API重试] 生成艺术照 - 第 1 次尝试 (最多 2 次)",
        "[API重试] 生成艺术照 - 第 1 次尝试失败: 网络连接超时",
        "[API重试] 生成艺术照 - 准备重试 (剩余 1 次机会)\n"
        "[API重试] 生成艺术照 - 等待 1000ms 后重试",
        "[API重试] 生成艺术照 - 第 2 次尝试 (最多 2 次)",
        "[API重试] 生成艺术照 - 第 2 次尝试成功",
    ]


def test_the_give_up_line_counts_retries_not_attempts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="regen.retry")
    calls = Calls(RuntimeError("网络连接超时"), RuntimeError("网络连接超时"))
    with pytest.raises(RuntimeError):
        execute_with_retry(calls, operation_name="生成艺术照", max_retries=1)
    assert calls.count == 2
    formatter = SeedLogFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    assert lines[-1] == "[API重试] 生成艺术照 - 重试 1 次后放弃"


class AsyncApi:
    """An async API call that raises the given errors in turn, then returns ``"task-001"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.started = 0

    async def __call__(self) -> str:
        self.started += 1
        await asyncio.sleep(0)
        if self.errors:
            raise self.errors.pop(0)
        return "task-001"


async def test_the_seeds_lambda_idiom_is_retried_with_the_seeds_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="regen.retry")
    api = AsyncApi(HttpError(503, "服务暂不可用"), HttpError(503, "服务暂不可用"))
    result = execute_with_retry(
        lambda: api(),  # noqa: PLW0108 - the seed's idiom
        max_retries=2,
        operation_name="生成艺术照",
    )
    assert await result == "task-001"
    assert api.started == 3
    formatter = SeedLogFormatter()
    assert [formatter.format(r) for r in caplog.records] == [
        "[API重试] 生成艺术照 - 第 1 次尝试 (最多 3 次)",
        "[API重试] 生成艺术照 - 第 1 次尝试失败: 服务暂不可用",
        "[API重试] 生成艺术照 - 准备重试 (剩余 2 次机会)\n"
        "[API重试] 生成艺术照 - 等待 1000ms 后重试",
        "[API重试] 生成艺术照 - 第 2 次尝试 (最多 3 次)",
        "[API重试] 生成艺术照 - 第 2 次尝试失败: 服务暂不可用",
        "[API重试] 生成艺术照 - 准备重试 (剩余 1 次机会)\n"
        "[API重试] 生成艺术照 - 等待 2000ms 后重试",
        "[API重试] 生成艺术照 - 第 3 次尝试 (最多 3 次)",
        "[API重试] 生成艺术照 - 第 3 次尝试成功",
    ]


async def test_smart_retry_of_the_lambda_idiom_throws_a_4xx_at_once() -> None:
    api = AsyncApi(HttpError(400, "参数错误"))
    with pytest.raises(HttpError, match="参数错误"):
        await execute_with_smart_retry(lambda: api(), max_retries=2)  # noqa: PLW0108
    assert api.started == 1


async def test_the_lambda_idioms_timeout_bounds_each_awaited_attempt() -> None:
    count = 0

    async def hangs_once() -> str:
        nonlocal count
        count += 1
        if count == 1:
            await asyncio.Event().wait()  # a hung request: only the timeout ends it
        return "ok"

    with regen.test_mode(clock=regen.retry.Clock()):
        assert await execute_with_retry(lambda: hangs_once(), timeout=50) == "ok"  # noqa: PLW0108
    assert count == 2


async def test_a_wrapped_function_returning_an_awaitable_is_retried() -> None:
    api = AsyncApi(ConnectionResetError("ECONNRESET"))
    get_task_status = with_retry(lambda task_id: api(), operation_name="任务状态查询")
    assert await get_task_status("task-001") == "task-001"
    assert api.started == 2


def test_the_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.api_retry"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "result: task-001" in result.stdout
    assert "重试第 1 次，错误: 网络连接超时" in result.stdout
    assert "not retried: 参数错误" in result.stdout
    assert "status: RUNNING SUCCEEDED" in result.stdout
    assert "[API重试] 生成艺术照 - 第 2 次尝试成功" in result.stderr
