"""Running calls under a policy: what is retried, how often, how long, and what is recorded."""

from __future__ import annotations

import asyncio
import gc
import logging
import pickle
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import regen
from regen import Attempt, GiveUp, Kind, Permanent, Policy, Retryable, test_mode
from regen.retry import (
    AwaitableInSyncCall,
    Failure,
    FakeClock,
    attempt_number,
    idempotency_key,
    phase_timeout,
    remaining,
)


class Flaky:
    """Raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self) -> str:
        return self()


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with test_mode() as fake:
        assert isinstance(fake, FakeClock)
        yield fake


def test_success_calls_once_and_never_waits(clock: FakeClock) -> None:
    flaky = Flaky()
    assert Policy().call(flaky) == "ok"
    assert flaky.calls == 1
    assert clock.sleeps == []


def test_fails_twice_then_succeeds_on_the_third_attempt(clock: FakeClock) -> None:
    seen: list[Attempt] = []
    flaky = Flaky(TimeoutError("生图请求超时"), TimeoutError("生图请求超时"))
    policy = Policy.from_env("ALIYUN_IMAGE", environ={}, on_retry=seen.append)
    assert policy.call(flaky) == "ok"
    assert flaky.calls == 3
    assert [a.number for a in seen] == [1, 2]
    assert clock.sleeps == [2, 2]


def test_gives_up_after_three_timeouts_with_every_attempt_recorded(clock: FakeClock) -> None:
    flaky = Flaky(*(TimeoutError(f"timeout #{n}") for n in range(1, 5)))
    with pytest.raises(GiveUp) as caught:
        Policy(attempts=3, wait=2, multiplier=1).call(flaky)
    error = caught.value
    assert flaky.calls == 3
    assert [a.number for a in error.attempts] == [1, 2, 3]
    assert error.kind is Kind.TIMEOUT
    assert error.errors == [f"timeout: TimeoutError: timeout #{n}" for n in (1, 2, 3)]
    assert [a.wait for a in error.attempts] == [2, 2, None]
    assert isinstance(error.__cause__, TimeoutError)
    assert str(error.__cause__) == "timeout #3"


def test_keeps_only_the_last_three_errors() -> None:
    flaky = Flaky(*(ConnectionResetError(f"reset {n}") for n in range(6)))
    with test_mode(), pytest.raises(GiveUp) as caught:
        Policy(attempts=5, wait=0).call(flaky)
    assert len(caught.value.attempts) == 5
    assert [e.rsplit(" ", 1)[-1] for e in caught.value.errors] == ["2", "3", "4"]


@pytest.mark.parametrize(
    "error",
    [
        regen.ConfigError("api_key missing"),
        Permanent("401 Unauthorized", kind=Kind.AUTH, status=401),
        Permanent("403 Forbidden", kind=Kind.AUTH, status=403),
        Permanent("size 9999*9999 not supported", kind=Kind.BAD_REQUEST, status=400),
        KeyError("a bug, not weather"),
    ],
)
def test_failures_not_worth_retrying_are_called_once(clock: FakeClock, error: Exception) -> None:
    flaky = Flaky(error)
    with pytest.raises(GiveUp) as caught:
        Policy(attempts=3).call(flaky)
    assert flaky.calls == 1
    assert caught.value.attempts[0].retry is False
    assert clock.sleeps == []


def test_reraise_raises_the_error_itself_with_its_attempts(clock: FakeClock) -> None:
    flaky = Flaky(ValueError("bad params"))
    with pytest.raises(ValueError, match="bad params") as caught:
        Policy(reraise=True).call(flaky)
    assert [a.number for a in caught.value.attempts] == [1]  # type: ignore[attr-defined]


def test_unknown_errors_retry_only_when_asked(clock: FakeClock) -> None:
    flaky = Flaky(RuntimeError("odd"))
    assert Policy(retry_unknown=True, wait=0).call(flaky) == "ok"
    assert flaky.calls == 2
    # A Permanent marker stays permanent even then.
    flaky = Flaky(Permanent("stop"))
    with pytest.raises(GiveUp):
        Policy(retry_unknown=True).call(flaky)
    assert flaky.calls == 1


def test_seed_002_settings_map_to_two_attempts_and_capped_backoff(clock: FakeClock) -> None:
    # maxRetries: 1 → 2 attempts in total; timeout 30000 ms → 30 s per attempt;
    # backoff 1 s, then 2 s, capped at 5 s.
    policy = Policy(attempts=1 + 1, timeout=30000 / 1000, wait=1, multiplier=2, max_wait=5)
    flaky = Flaky(ConnectionResetError(), ConnectionResetError())
    with pytest.raises(GiveUp):
        policy.call(flaky)
    assert flaky.calls == 2
    assert clock.sleeps == [1]
    longer = policy.replace(attempts=5)
    with pytest.raises(GiveUp):
        longer.call(Flaky(*[ConnectionResetError()] * 5))
    assert clock.sleeps == [1, 1, 2, 4, 5]


def test_retry_after_is_honoured(clock: FakeClock) -> None:
    flaky = Flaky(Retryable("429", kind="rate_limited", status=429, retry_after=7))
    assert Policy(wait=1).call(flaky) == "ok"
    assert clock.sleeps == [7]


def test_retry_after_longer_than_allowed_gives_up_at_once(clock: FakeClock) -> None:
    flaky = Flaky(Retryable("429", kind="rate_limited", retry_after=300))
    with pytest.raises(GiveUp) as caught:
        Policy(retry_after_max=60).call(flaky)
    assert flaky.calls == 1
    assert caught.value.attempts[0].reason == "retry_after_too_long"
    assert clock.sleeps == []


def test_gives_up_early_when_the_wait_would_pass_the_deadline(clock: FakeClock) -> None:
    flaky = Flaky(Retryable("429", kind="rate_limited", retry_after=20))
    with pytest.raises(GiveUp) as caught:
        Policy(deadline=10, timeout=5).call(flaky)
    assert flaky.calls == 1
    assert caught.value.attempts[0].reason == "deadline"


def test_unavailable_waits_for_the_reopening_even_for_a_call_that_must_not_run_twice(
    clock: FakeClock,
) -> None:
    class BreakerOpen(Exception):
        failure = Failure.of(Kind.UNAVAILABLE, "breaker_open", retry_after=12.0, sent=False)

    flaky = Flaky(BreakerOpen())
    assert Policy(wait=1, idempotent=False).call(flaky) == "ok"
    assert clock.sleeps == [12.0]
    with pytest.raises(GiveUp) as caught:
        Policy(deadline=10, timeout=5).call(Flaky(BreakerOpen()))
    assert caught.value.kind is Kind.UNAVAILABLE
    assert caught.value.attempts[0].reason == "deadline"


def test_on_give_up_receives_the_last_attempt(clock: FakeClock) -> None:
    given_up: list[Attempt] = []
    with pytest.raises(GiveUp):
        Policy(attempts=2, wait=0, on_give_up=given_up.append).call(
            Flaky(TimeoutError(), TimeoutError())
        )
    assert [a.number for a in given_up] == [2]


def test_operation_name_and_fields_reach_the_logs(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="regen.retry")
    policy = Policy(attempts=2, wait=1, operation="生成艺术照")
    assert policy.call(Flaky(TimeoutError("网络连接超时"))) == "ok"
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "生成艺术照: attempt 1 of 2",
        "生成艺术照: attempt 1 of 2 failed (timeout): TimeoutError: 网络连接超时",
        "生成艺术照: retrying in 1000 ms (1 attempts left)",
        "生成艺术照: attempt 2 of 2",
        "生成艺术照: attempt 2 of 2 succeeded",
    ]
    retrying = caplog.records[2]
    assert (retrying.operation, retrying.attempt, retrying.max_attempts) == ("生成艺术照", 1, 2)  # type: ignore[attr-defined]
    assert (retrying.remaining, retrying.wait_ms, retrying.outcome) == (1, 1000, "retrying")  # type: ignore[attr-defined]


def test_secrets_in_error_messages_are_masked(clock: FakeClock) -> None:
    key = "sk-" + "abcdefghijklmnopqrstuvwxyz123456"  # a made-up key of a real key's shape
    with pytest.raises(GiveUp) as caught:
        Policy(attempts=1).call(Flaky(Permanent(f"Incorrect API key provided: {key}")))
    assert key not in str(caught.value)
    assert key not in caught.value.errors[0]
    assert "sk-…3456" in caught.value.errors[0]


def test_give_up_survives_pickling_without_the_exceptions() -> None:
    with test_mode(), pytest.raises(GiveUp) as caught:
        Policy(attempts=2, wait=0, operation="op").call(
            Flaky(TimeoutError("t1"), TimeoutError("t2"))
        )
    restored = pickle.loads(pickle.dumps(caught.value))
    assert restored.errors == caught.value.errors
    assert restored.operation == "op"
    assert restored.attempts[0].error is None
    assert Attempt.from_dict(caught.value.attempts[1].to_dict()) == caught.value.attempts[1]


def test_markers_survive_pickling() -> None:
    marker = pickle.loads(pickle.dumps(Retryable("x", kind="timeout", retry_after=3)))
    assert (str(marker), marker.kind, marker.retry_after) == ("x", "timeout", 3)


# --- non-idempotent calls ---------------------------------------------------------------------


def test_non_idempotent_call_retries_only_what_never_reached_the_server(clock: FakeClock) -> None:
    payment = Policy(attempts=2, wait=0, idempotent=False, operation="pay")
    refused = Flaky(ConnectionRefusedError())
    assert payment.call(refused) == "ok"
    assert refused.calls == 2
    timed_out = Flaky(TimeoutError("read timeout after the request was sent"))
    with pytest.raises(GiveUp) as caught:
        payment.call(timed_out)
    assert timed_out.calls == 1
    assert caught.value.attempts[0].reason == "not_idempotent"


def test_non_idempotent_call_with_a_key_retries_timeouts_and_5xx(clock: FakeClock) -> None:
    payment = Policy(attempts=3, wait=0, idempotent=False, idempotency_key="ORDER-20261123-1")
    seen: list[str | None] = []

    def pay() -> str:
        seen.append(idempotency_key())
        if len(seen) == 1:
            raise TimeoutError("read timeout")
        if len(seen) == 2:
            raise Retryable("502", kind="server_error", status=502)
        return "paid"

    assert payment.call(pay) == "paid"
    assert seen == ["ORDER-20261123-1"] * 3


# --- time budgets -----------------------------------------------------------------------------


async def test_a_hung_async_call_is_cut_at_its_per_attempt_timeout() -> None:
    events: list[str] = []

    async def hang() -> str:
        number = len([e for e in events if e.startswith("start")]) + 1
        events.append(f"start {number}")
        if number == 1:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                events.append("cancelled 1")
                raise
        return "ok"

    started = time.monotonic()
    assert await Policy(attempts=2, timeout=0.1, wait=0).acall(hang) == "ok"
    assert time.monotonic() - started < 1
    # The hung attempt was cancelled (not left running) before the next one started.
    assert events == ["start 1", "cancelled 1", "start 2"]
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_async_give_up_after_hangs_records_timeouts() -> None:
    async def hang() -> None:
        await asyncio.sleep(3600)

    with pytest.raises(GiveUp) as caught:
        await Policy(attempts=2, timeout=0.05, wait=0).acall(hang)
    assert [a.kind for a in caught.value.attempts] == [Kind.TIMEOUT, Kind.TIMEOUT]
    assert all(0.04 <= a.duration < 0.5 for a in caught.value.attempts)


async def test_outside_cancellation_is_not_swallowed() -> None:
    async def hang() -> None:
        await asyncio.sleep(3600)

    task = asyncio.create_task(Policy(attempts=3, timeout=10).acall(hang))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_call_that_swallows_the_timeout_keeps_its_result() -> None:
    async def stubborn() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "cleaned up"
        return "never"

    assert await Policy(attempts=1, timeout=0.02).acall(stubborn) == "cleaned up"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


def _silent_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, server.getsockname()[1]


def test_a_hung_sync_call_ends_as_timeout_when_it_reads_its_budget() -> None:
    server, port = _silent_server()
    calls = 0

    def fetch() -> bytes:
        nonlocal calls
        calls += 1
        budget = remaining()
        assert budget is not None
        with socket.create_connection(("127.0.0.1", port), timeout=budget) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return conn.recv(1)  # the server never answers

    started = time.monotonic()
    try:
        with pytest.raises(GiveUp) as caught:
            Policy(attempts=2, timeout=0.1, wait=0).call(fetch)
    finally:
        server.close()
    assert time.monotonic() - started < 1.5
    assert calls == 2
    assert caught.value.kind is Kind.TIMEOUT


def test_a_hung_sync_call_in_a_worker_thread_is_abandoned_at_its_timeout() -> None:
    release = threading.Event()

    def hang() -> str:
        release.wait(10)
        return "late"

    started = time.monotonic()
    try:
        with pytest.raises(GiveUp) as caught:
            Policy(attempts=2, timeout=0.1, wait=0, thread=True).call(hang)
    finally:
        release.set()
    assert time.monotonic() - started < 1
    assert [a.kind for a in caught.value.attempts] == [Kind.TIMEOUT, Kind.TIMEOUT]


def test_budget_accessors_inside_and_outside_a_call(clock: FakeClock) -> None:
    seen: list[tuple[float | None, float | None, int | None]] = []

    def work() -> str:
        seen.append((remaining(), phase_timeout("download"), attempt_number()))
        if len(seen) == 1:
            clock.advance(100)
            raise TimeoutError
        return "ok"

    policy = Policy(attempts=2, timeout=180, wait=0, phases={"download": 60})
    assert policy.call(work) == "ok"
    assert seen == [(180, 60, 1), (180, 60, 2)]
    assert (remaining(), phase_timeout("download"), attempt_number()) == (None, None, None)
    assert phase_timeout("download", 5) == 5


def test_the_deadline_bounds_the_last_attempts_timeout(clock: FakeClock) -> None:
    budgets: list[float | None] = []

    def work() -> str:
        budgets.append(remaining())
        clock.advance(4)
        raise TimeoutError

    with pytest.raises(GiveUp):
        Policy(attempts=5, timeout=5, wait=1, multiplier=1, deadline=12).call(work)
    assert budgets == [5, 5, 2]


# --- async specifics and decorators ------------------------------------------------------------


async def test_async_hooks_are_awaited(clock: FakeClock) -> None:
    seen: list[int] = []

    async def on_retry(attempt: Attempt) -> None:
        await asyncio.sleep(0)
        seen.append(attempt.number)

    flaky = Flaky(ConnectionResetError(), ConnectionResetError())
    assert await Policy(wait=1, on_retry=on_retry).acall(flaky.acall) == "ok"
    assert seen == [1, 2]
    assert clock.sleeps == [1, 2]


async def test_decorated_async_function_keeps_its_name_and_retries(clock: FakeClock) -> None:
    calls = 0

    @regen.retrying(attempts=2, timeout=30, wait=1)
    async def generate_art_photo(prompt: str, *, size: str = "1024*1024") -> str:
        """Generate one art photo."""
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError
        return f"{prompt}@{size}"

    assert generate_art_photo.__name__ == "generate_art_photo"
    assert generate_art_photo.__doc__ == "Generate one art photo."
    assert await generate_art_photo("cat", size="512*512") == "cat@512*512"
    assert calls == 2


def test_decorated_methods_and_policy_as_decorator(clock: FakeClock) -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @Policy(attempts=3, wait=0, timeout=None)
        def status(self, task_id: str) -> str:
            self.calls += 1
            if self.calls < 3:
                raise ConnectionResetError
            return f"{task_id}:SUCCEEDED"

    client = Client()
    assert client.status("t1") == "t1:SUCCEEDED"
    assert client.calls == 3


def test_module_level_call_and_acall(clock: FakeClock) -> None:
    assert regen.call(Policy(wait=0), Flaky(TimeoutError())) == "ok"
    flaky = Flaky(TimeoutError())
    assert asyncio.run(regen.acall(Policy(wait=0), flaky.acall)) == "ok"
    assert flaky.calls == 2


# --- awaitables on the sync path -----------------------------------------------------------------


class AsyncFlaky(Flaky):
    """An async API whose coroutine raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        super().__init__(*errors)
        self.started = 0

    async def api(self) -> str:
        self.started += 1
        await asyncio.sleep(0)
        return self()


def _via_call(policy: Policy, fn: Callable[[], Any]) -> Any:
    return policy.call(fn)


def _via_decorator(policy: Policy, fn: Callable[[], Any]) -> Any:
    return policy(fn)()


def _via_lean_decorator(policy: Policy, fn: Callable[[], Any]) -> Any:
    return policy.replace(timeout=None)(fn)()


@pytest.mark.parametrize("run", [_via_call, _via_decorator, _via_lean_decorator])
def test_a_sync_call_refuses_a_coroutine_naming_acall_and_closes_it(
    clock: FakeClock, run: Callable[[Policy, Callable[[], Any]], Any]
) -> None:
    flaky = AsyncFlaky(ConnectionResetError("reset"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(AwaitableInSyncCall, match=r"returned coroutine.*acall") as caught:
            run(Policy(wait=0, operation="generate"), lambda: flaky.api())  # noqa: PLW0108
        assert isinstance(caught.value, TypeError)
        assert str(caught.value).startswith("generate: ")
        del caught
        gc.collect()  # a coroutine left unclosed warns "never awaited" when collected
    assert [str(w.message) for w in seen] == []
    assert flaky.started == 0  # the coroutine never ran, so the API was never called


def test_a_sync_call_refuses_an_awaitable_after_a_retry(clock: FakeClock) -> None:
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        flaky = Flaky(ConnectionResetError("reset"))

        def sync_then_future() -> object:
            flaky()
            return future

        with pytest.raises(AwaitableInSyncCall, match="returned Future"):
            Policy(wait=0).call(sync_then_future)
        assert flaky.calls == 2
    finally:
        loop.close()


async def test_acall_retries_a_lambda_returning_a_coroutine(clock: FakeClock) -> None:
    flaky = AsyncFlaky(ConnectionResetError("reset"), Retryable("busy"))
    assert await Policy(wait=0).acall(lambda: flaky.api()) == "ok"  # noqa: PLW0108
    assert flaky.started == 3


async def test_acall_cuts_a_lambdas_coroutine_at_the_per_attempt_timeout() -> None:
    count = 0

    async def hangs_once() -> str:
        nonlocal count
        count += 1
        if count == 1:
            await asyncio.Event().wait()  # hung: only the timeout ends it
        return "ok"

    policy = Policy(attempts=2, timeout=0.05, wait=0)
    assert await policy.acall(lambda: hangs_once()) == "ok"  # noqa: PLW0108
    assert count == 2
