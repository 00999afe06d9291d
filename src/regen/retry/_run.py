"""Running a call under a :class:`Policy`, sync or async.

The first attempt runs on a lean path (one ``try`` and a clock read); everything a failure
needs — classification, history, waits, hooks, logs — lives on the retry path, so a call
that succeeds pays almost nothing for being retryable.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, ParamSpec, TypeVar, cast

from regen.retry import _state
from regen.retry._attempts import Attempt
from regen.retry._budget import Budget, current
from regen.retry._errors import AwaitableInSyncCall
from regen.retry._judge import judge, max_attempts
from regen.retry._logs import give_up, log_failure, log_start, log_success, logger
from regen.retry._policy import Policy
from regen.retry._timeout import run_in_thread, with_timeout

P = ParamSpec("P")
R = TypeVar("R")

_DEBUG = logging.DEBUG

#: Result types that are never awaitable: a set lookup spares the common results the
#: ``isinstance(result, Awaitable)`` check (about 4x the cost) on the sync success path.
_PLAIN = frozenset({type(None), bool, int, float, str, bytes, dict, list, tuple})


# --- judging a failure ----------------------------------------------------------------------


def _budget(policy: Policy, number: int, call_start: float) -> tuple[Budget | None, float | None]:
    """The attempt's budget (for the context variable) and its effective timeout."""
    timeout = policy.timeout
    if policy.deadline is not None:
        left = policy.deadline - (_state.clock.monotonic() - call_start)
        timeout = left if timeout is None else min(timeout, left)
        timeout = max(timeout, 0.001)
    if timeout is None and not policy.phases and policy.idempotency_key is None and number == 1:
        return None, None
    ends_at = None if timeout is None else _state.clock.monotonic() + timeout
    return Budget(ends_at, policy.phases, number, policy.idempotency_key), timeout


# --- sync ---------------------------------------------------------------------------------------


def _refuse_awaitable(policy: Policy, fn: Callable[..., Any], result: object) -> NoReturn:
    """Refuse an awaitable that a sync call got back: its failures would escape the retries."""
    if inspect.iscoroutine(result):
        result.close()  # never started: closing it spares the caller a "never awaited" warning
    name = policy.operation or getattr(fn, "__qualname__", None) or repr(fn)
    raise AwaitableInSyncCall(
        f"{name}: the function returned {type(result).__name__}, an awaitable, to a sync "
        "call, which cannot await it, so its failures would not be retried: "
        "use `await policy.acall(fn)` or `await regen.acall(...)` "
        "(they await what the function returns), or decorate an `async def`"
    )


def _attempt(
    policy: Policy, fn: Callable[..., R], args: Any, kwargs: Any, number: int, call_start: float
) -> R:
    budget, timeout = _budget(policy, number, call_start)
    if budget is None:
        return fn(*args, **kwargs)
    token = current.set(budget)
    try:
        if policy.thread and timeout is not None:
            return run_in_thread(fn, args, kwargs, timeout)
        return fn(*args, **kwargs)
    finally:
        current.reset(token)


def call(policy: Policy, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Call ``fn`` under ``policy``; see :meth:`Policy.call`."""
    start = _state.clock.monotonic()
    if logger.isEnabledFor(_DEBUG):
        log_start(policy, 1, max_attempts(policy))
    try:
        result = _attempt(policy, fn, args, kwargs, 1, start)
    except Exception as exc:
        return _retry(policy, fn, args, kwargs, exc, start)
    if type(result) not in _PLAIN and isinstance(result, Awaitable):
        _refuse_awaitable(policy, fn, result)
    if logger.isEnabledFor(_DEBUG):
        log_success(policy, 1)
    return result


def _retry(
    policy: Policy,
    fn: Callable[..., R],
    args: Any,
    kwargs: Any,
    exc: BaseException,
    call_start: float,
) -> R:
    history: list[Attempt] = []
    number, attempt_start = 1, call_start
    total = max_attempts(policy)
    while True:
        attempt = judge(policy, exc, number, attempt_start, call_start)
        history.append(attempt)
        log_failure(policy, attempt, total)
        if attempt.wait is None:
            if policy.on_give_up is not None:
                policy.on_give_up(attempt)
            give_up(policy, history, exc)
        if policy.on_retry is not None:
            policy.on_retry(attempt)
        if attempt.wait > 0 or _state.testing:
            _state.clock.sleep(attempt.wait)
        number += 1
        attempt_start = _state.clock.monotonic()
        log_start(policy, number, total)
        try:
            result = _attempt(policy, fn, args, kwargs, number, call_start)
        except Exception as next_exc:
            exc = next_exc
            continue
        if type(result) not in _PLAIN and isinstance(result, Awaitable):
            _refuse_awaitable(policy, fn, result)
        log_success(policy, number)
        return result


# --- async -----------------------------------------------------------------------------------


async def _aattempt(
    policy: Policy,
    fn: Callable[..., Awaitable[R]],
    args: Any,
    kwargs: Any,
    number: int,
    call_start: float,
) -> R:
    budget, timeout = _budget(policy, number, call_start)
    if budget is None:
        return await fn(*args, **kwargs)
    token = current.set(budget)
    try:
        if timeout is None:
            return await fn(*args, **kwargs)
        return await with_timeout(fn, args, kwargs, timeout)
    finally:
        current.reset(token)


async def acall(
    policy: Policy, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
) -> R:
    """Await ``fn`` under ``policy``; see :meth:`Policy.acall`."""
    start = _state.clock.monotonic()
    if logger.isEnabledFor(_DEBUG):
        log_start(policy, 1, max_attempts(policy))
    try:
        result = await _aattempt(policy, fn, args, kwargs, 1, start)
    except Exception as exc:
        return await _aretry(policy, fn, args, kwargs, exc, start)
    if logger.isEnabledFor(_DEBUG):
        log_success(policy, 1)
    return result


async def _ahook(hook: Callable[[Attempt], Any] | None, attempt: Attempt) -> None:
    if hook is not None:
        outcome = hook(attempt)
        if inspect.isawaitable(outcome):
            await outcome


async def _aretry(
    policy: Policy,
    fn: Callable[..., Awaitable[R]],
    args: Any,
    kwargs: Any,
    exc: BaseException,
    call_start: float,
) -> R:
    history: list[Attempt] = []
    number, attempt_start = 1, call_start
    total = max_attempts(policy)
    while True:
        attempt = judge(policy, exc, number, attempt_start, call_start)
        history.append(attempt)
        log_failure(policy, attempt, total)
        if attempt.wait is None:
            await _ahook(policy.on_give_up, attempt)
            give_up(policy, history, exc)
        await _ahook(policy.on_retry, attempt)
        if attempt.wait > 0 or _state.testing:
            await _state.clock.asleep(attempt.wait)
        number += 1
        attempt_start = _state.clock.monotonic()
        log_start(policy, number, total)
        try:
            result = await _aattempt(policy, fn, args, kwargs, number, call_start)
        except Exception as next_exc:
            exc = next_exc
            continue
        log_success(policy, number)
        return result


# --- decorating ------------------------------------------------------------------------------


def wrap(policy: Policy, fn: Callable[P, Any]) -> Callable[P, Any]:
    """``fn`` retried under ``policy`` on every call; sync or async as ``fn`` is."""
    if inspect.iscoroutinefunction(fn):
        async_fn = cast(Callable[..., Awaitable[Any]], fn)
        lean = (
            policy.timeout is None
            and policy.deadline is None
            and not policy.phases
            and policy.idempotency_key is None
        )

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            start = _state.clock.monotonic()
            if logger.isEnabledFor(_DEBUG):
                return await acall(policy, async_fn, *args, **kwargs)
            try:
                if lean:
                    return await async_fn(*args, **kwargs)
                return await _aattempt(policy, async_fn, args, kwargs, 1, start)
            except Exception as exc:
                return await _aretry(policy, async_fn, args, kwargs, exc, start)

        async_wrapper.retry_policy = policy  # type: ignore[attr-defined]
        return async_wrapper

    lean = (
        policy.timeout is None
        and policy.deadline is None
        and not policy.phases
        and policy.idempotency_key is None
    )

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = _state.clock.monotonic()
        if logger.isEnabledFor(_DEBUG):
            return call(policy, fn, *args, **kwargs)
        try:
            result = fn(*args, **kwargs) if lean else _attempt(policy, fn, args, kwargs, 1, start)
        except Exception as exc:
            return _retry(policy, fn, args, kwargs, exc, start)
        if type(result) not in _PLAIN and isinstance(result, Awaitable):
            _refuse_awaitable(policy, fn, result)
        return result

    wrapper.retry_policy = policy  # type: ignore[attr-defined]
    return wrapper


def retrying(
    policy: Policy | None = None, /, **settings: Any
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function so every call is retried: ``@retrying(attempts=2, timeout=30)``.

    Takes a :class:`Policy`, or :class:`Policy` settings, or both (settings override).
    """
    chosen = (
        Policy(**settings)
        if policy is None
        else (policy.replace(**settings) if settings else policy)
    )

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        return cast(Callable[P, R], wrap(chosen, fn))

    return decorate
