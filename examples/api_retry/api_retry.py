"""Seed 002's retry utility on regen: executeWithRetry, withRetry, executeWithSmartRetry.

The seed's options map onto a :class:`regen.Policy` like this:

- ``maxRetries: 1`` counts *retries*; regen counts *attempts*: ``attempts = max_retries + 1``.
- ``timeout: 30000`` is milliseconds per attempt; regen takes seconds: ``timeout = 30``.
- backoff "1 s, then 2 s, capped at 5 s" is ``wait=1, multiplier=2, max_wait=5``; a
  server's ``Retry-After`` is waited within the same 5 s (``retry_after_max=5``), and a
  longer one throws at once rather than wait past the seed's cap.
- ``onRetry(attempt, error)`` receives the retry's number and the error; regen's hook
  receives one :class:`regen.Attempt` record, so the adapter passes ``(a.number, a.error)``.

The plain variants retry *any* failure (the seed's behaviour, opted into with
``retry_unknown=True``); the smart variant retries only what the failure taxonomy calls
transient (network errors, 5xx, 429, timeouts — and any error whose message says "超时" or
"timeout") and throws every other error at once, as the seed asks. The seed throws every
4xx but 429 at once, so the smart variant does too: regen's own taxonomy retries 408 (a
timeout) and 409 (OpenAI's lock conflict).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import regen
from regen import Attempt, Kind, Policy

T = TypeVar("T")

OnRetry = Callable[[int, BaseException], Any]

#: Seed 002: an error whose message mentions a timeout is a timeout, whatever its type.
TIMEOUT_WORDS = regen.by_message({"超时": Kind.TIMEOUT, "timeout": Kind.TIMEOUT})


def client_errors(exc: BaseException) -> regen.Failure | None:
    """Seed 002: a 4xx is the caller's error, thrown at once; only a rate limit (429, or a
    provider's throttling answer) is retried."""
    found = regen.classify(exc)
    if found.status is None or not 400 <= found.status < 500 or found.kind is Kind.RATE_LIMITED:
        return None
    return regen.Failure(found.kind, False, found.reason, found.status, found.retry_after)


def _always_retry(exc: BaseException) -> regen.Failure:
    found = regen.classify(exc)
    return regen.Failure(found.kind, True, found.reason, found.status, found.retry_after)


def seed_policy(
    *,
    max_retries: int = 1,
    timeout: float = 30_000,
    operation_name: str = "API调用",
    on_retry: OnRetry | None = None,
    smart: bool = False,
) -> Policy:
    """The :class:`Policy` behind the seed's options (``timeout`` in milliseconds)."""

    def hook(attempt: Attempt) -> Any:
        if on_retry is not None and attempt.error is not None:
            return on_retry(attempt.number, attempt.error)
        return None

    classifier = regen.retry.chain(TIMEOUT_WORDS, client_errors) if smart else _always_retry
    return Policy(
        attempts=max_retries + 1,
        timeout=timeout / 1000,
        wait=1,
        multiplier=2,
        max_wait=5,
        retry_after_max=5,  # a server asking for longer: thrown at once, never a longer wait
        operation=operation_name,
        on_retry=hook,
        classifier=classifier,
        reraise=True,  # the seed throws the call's own error, not a wrapper
    )


def execute_with_retry(fn: Callable[[], Any], **options: Any) -> Any:
    """Run ``fn``, retrying any failure; await the result when ``fn`` is async.

    ``fn`` may be sync, an ``async def``, or the seed's ``lambda: some_async_api()``: a
    function that returns an awaitable is retried like an ``async def`` (see :func:`run`).
    """
    return run(seed_policy(**options), fn)


def execute_with_smart_retry(fn: Callable[[], Any], **options: Any) -> Any:
    """Like :func:`execute_with_retry`, but only transient failures are retried."""
    return run(seed_policy(smart=True, **options), fn)


def with_retry(fn: Callable[..., T], **options: Any) -> Callable[..., T]:
    """``fn`` wrapped so every call is retried (``smart=True`` for the smart variant).

    Calls of a function that returns an awaitable give an awaitable, as with
    :func:`execute_with_retry`.
    """
    policy = seed_policy(**options)
    if inspect.iscoroutinefunction(fn):
        return policy(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run(policy, functools.partial(fn, *args, **kwargs))

    return wrapper


def run(policy: Policy, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` under ``policy``, sync or async as ``fn`` turns out to be.

    An ``async def`` goes to :meth:`Policy.acall`. Any other function is called once to
    see what it gives, since Python cannot tell beforehand: an awaitable (the seed's
    ``() => someApiFunction()``) makes the result an awaitable whose every attempt awaits
    what ``fn`` returns, within the per-attempt timeout — the first attempt awaiting the
    one already made; a value or an exception stays on the sync path as attempt 1 (that
    first call runs before the policy does, so ``regen.remaining()`` reads ``None`` in it).
    """
    if inspect.iscoroutinefunction(fn):
        return policy.acall(fn)
    try:
        first = fn()
    except Exception as error:
        return policy.call(_first_then(_raising(error), fn))
    if inspect.isawaitable(first):
        return policy.acall(_awaiting(first, fn))
    return policy.call(_first_then(lambda: first, fn))


def _first_then(first: Callable[[], Any], fn: Callable[[], Any]) -> Callable[[], Any]:
    """A function that runs ``first`` on its first call and ``fn`` on every later one."""
    pending = [first]

    def attempt() -> Any:
        return (pending.pop() if pending else fn)()

    return attempt


def _raising(error: Exception) -> Callable[[], Any]:
    def again() -> Any:
        raise error

    return again


def _awaiting(first: Awaitable[Any], fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """An async attempt that awaits ``first``, then on later attempts what ``fn`` returns."""
    pending = [first]

    async def attempt() -> Any:
        result = pending.pop() if pending else fn()
        if inspect.isawaitable(result):
            return await result
        return result

    return attempt
