"""Per-call overhead of regen's retry core beside tenacity, stamina and backoff, in one process.

Each library wraps the same trivial function; the figure is the time per call minus the
time of calling the bare function, in nanoseconds (median of several repetitions, after a
warm-up). Three scenarios, sync and async:

- ``success``: the call succeeds at once (the path every healthy call takes);
- ``flaky``: the call fails twice with a transient error, then succeeds, with zero waits
  (the figure is the whole time per call, not an overhead);
- ``timeout`` (async): a per-attempt timeout, which none of the peers offers; their users
  wrap the call in ``asyncio.timeout``, so that is what the peers run.

Run: ``python benchmarks/retry_overhead.py [--json] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import backoff
import stamina
import tenacity

import regen

REPEATS = 7


def _sync_fn() -> int:
    return 1


async def _async_fn() -> int:
    return 1


class _Flaky:
    """Fails twice with ConnectionResetError, then succeeds; resets every third call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls % 3:
            raise ConnectionResetError("reset by peer")
        return 1


class _AFlaky(_Flaky):
    async def acall(self) -> int:
        return self()


def _time_sync(fn: Callable[[], Any], n: int) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        return (time.perf_counter_ns() - start) / n
    finally:
        gc.enable()


def _time_async(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    async def loop() -> float:
        start = time.perf_counter_ns()
        for _ in range(n):
            await fn()
        return (time.perf_counter_ns() - start) / n

    gc.collect()
    gc.disable()
    try:
        return asyncio.run(loop())
    finally:
        gc.enable()


def _median(measure: Callable[[], float]) -> float:
    measure()  # warm-up
    return statistics.median(measure() for _ in range(REPEATS))


def _sync_success(n: int) -> dict[str, float]:
    policy = regen.Policy(attempts=3, timeout=None, wait=0)
    candidates: dict[str, Callable[[], Any]] = {
        "bare": _sync_fn,
        "regen": policy(_sync_fn),
        "backoff": backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(_sync_fn),
        "stamina": stamina.retry(on=ConnectionError, attempts=3)(_sync_fn),
        "tenacity": tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            retry=tenacity.retry_if_exception_type(ConnectionError),
        )(_sync_fn),
    }
    times = {name: _median(lambda f=f: _time_sync(f, n)) for name, f in candidates.items()}
    bare = times.pop("bare")
    return {name: max(t - bare, 1.0) for name, t in times.items()}


def _async_success(n: int) -> dict[str, float]:
    policy = regen.Policy(attempts=3, timeout=None, wait=0)
    candidates: dict[str, Callable[[], Awaitable[Any]]] = {
        "bare": _async_fn,
        "regen": policy(_async_fn),
        "backoff": backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(_async_fn),
        "stamina": stamina.retry(on=ConnectionError, attempts=3)(_async_fn),
        "tenacity": tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            retry=tenacity.retry_if_exception_type(ConnectionError),
        )(_async_fn),
    }
    times = {name: _median(lambda f=f: _time_async(f, n)) for name, f in candidates.items()}
    bare = times.pop("bare")
    return {name: max(t - bare, 1.0) for name, t in times.items()}


def _async_timeout(n: int) -> dict[str, float]:
    async def bare_timeout() -> int:
        async with asyncio.timeout(30):
            return await _async_fn()

    tenacity_wrapped = tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        retry=tenacity.retry_if_exception_type(ConnectionError),
    )(bare_timeout)
    candidates: dict[str, Callable[[], Awaitable[Any]]] = {
        "bare": _async_fn,
        "asyncio.timeout": bare_timeout,
        "regen": regen.Policy(attempts=3, timeout=30, wait=0)(_async_fn),
        "tenacity": tenacity_wrapped,
        "stamina": stamina.retry(on=ConnectionError, attempts=3)(bare_timeout),
        "backoff": backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(bare_timeout),
    }
    times = {name: _median(lambda f=f: _time_async(f, n)) for name, f in candidates.items()}
    bare = times.pop("bare")
    return {name: max(t - bare, 1.0) for name, t in times.items()}


def _flaky_makers() -> dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """Each library's decorator for three attempts, zero waits, logs off (sync or async)."""
    return {
        "regen": regen.Policy(attempts=3, timeout=None, wait=0),
        "backoff": backoff.on_exception(
            backoff.constant,
            ConnectionError,
            max_tries=3,
            interval=0,
            jitter=None,
            logger=None,
        ),
        "stamina": stamina.retry(
            on=ConnectionError, attempts=3, wait_initial=0, wait_max=0, wait_jitter=0
        ),
        "tenacity": tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            retry=tenacity.retry_if_exception_type(ConnectionError),
        ),
    }


def _flaky(n: int) -> dict[str, float]:
    """Time per successful call that needed three attempts, sync, zero waits, logs off."""
    results: dict[str, float] = {}
    for name, make in _flaky_makers().items():
        wrapped = make(_Flaky())
        results[name] = _median(lambda w=wrapped: _time_sync(w, n))
    return results


def _async_flaky(n: int) -> dict[str, float]:
    """Time per successful call that needed three attempts, async, zero waits, logs off."""
    results: dict[str, float] = {}
    for name, make in _flaky_makers().items():
        wrapped = make(_AFlaky().acall)
        results[name] = _median(lambda w=wrapped: _time_async(w, n))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()
    n = 2_000 if args.quick else 20_000
    stamina.set_testing(False)
    # Logs and instrumentation off for every library alike.
    stamina.instrumentation.set_on_retry_hooks([])
    for name in ("regen", "backoff", "stamina", "tenacity"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    figures: dict[str, Any] = {
        "calls_per_repeat": n,
        "repeats": REPEATS,
        "python": sys.version.split()[0],
        "sync_success_ns": _sync_success(n),
        "async_success_ns": _async_success(n),
        "async_timeout_ns": _async_timeout(n),
        "sync_flaky_ns": _flaky(max(n // 5, 400)),
        "async_flaky_ns": _async_flaky(max(n // 5, 400)),
    }
    sync, asyn, tmo = (
        figures[k] for k in ("sync_success_ns", "async_success_ns", "async_timeout_ns")
    )
    figures["ratios"] = {
        "sync_vs_backoff": sync["regen"] / sync["backoff"],
        "async_vs_backoff": asyn["regen"] / asyn["backoff"],
        "async_timeout_vs_tenacity": tmo["regen"] / tmo["tenacity"],
    }
    for title, key in (
        ("sync, success", "sync_success_ns"),
        ("async, success", "async_success_ns"),
        ("async, per-attempt timeout", "async_timeout_ns"),
        ("sync, fails twice then succeeds (time per call)", "sync_flaky_ns"),
        ("async, fails twice then succeeds (time per call)", "async_flaky_ns"),
    ):
        print(f"{title}:")
        row = figures[key]
        for name, value in sorted(row.items(), key=lambda kv: kv[1]):
            ratio = row["regen"] / value
            print(f"  {name:16} {value:10.0f} ns   regen ÷ {name} = {ratio:.2f}")
    print("bars:", ", ".join(f"{k} = {v:.3f}" for k, v in figures["ratios"].items()))
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
