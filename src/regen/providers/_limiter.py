"""A provider's request rate, shared by every worker: token buckets as pure functions.

The value lives in a :class:`~regen.providers.SharedState` under ``limit:<provider>``:
``{"r": [tokens, at]}`` for requests (refilled at ``rps`` a second, holding at most
``burst``) and ``{"t": [tokens, at]}`` for model tokens where the provider counts them
(refilled at ``tpm`` a minute). A request takes a request token, or reserves the next one
and waits for it, so that callers queue in order instead of stampeding when it comes; a
request that could not wait that long (its attempt's deadline) reserves nothing and is
refused. Model tokens are known only after a chat reply: they are spent then
(:func:`spend`), and a request waits while the token bucket is in debt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from regen.foundation import ConfigError, is_finite, is_whole


def limit_key(provider: str) -> str:
    """The shared-state key of a provider's rate limit."""
    return f"limit:{provider}"


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """A provider's limits: ``rps`` requests a second in bursts of ``burst`` (default
    ``ceil(rps)``), ``tpm`` model tokens a minute, and the most calls one process runs at
    once (``concurrency``; ``None``: no cap). ``adaptive`` halves this process's concurrency
    on a rate-limited answer and grows it back by one per window of successes."""

    rps: float | None = None
    burst: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    adaptive: bool = True

    def __post_init__(self) -> None:
        rps = self.rps
        if rps is not None and (not is_finite(rps) or rps <= 0):
            raise ConfigError(f"limit rps={rps!r}: expected a number of requests a second > 0")
        for name in ("burst", "tpm", "concurrency"):
            value = getattr(self, name)
            if value is not None and (not is_whole(value) or value < 1):
                raise ConfigError(f"limit {name}={value!r}: expected a whole number ≥ 1")
        if self.burst is not None and rps is None:
            raise ConfigError("limit burst needs rps: it is the burst of a per-second limit")
        if not isinstance(self.adaptive, bool):
            raise ConfigError(f"limit adaptive={self.adaptive!r}: expected true or false")

    @property
    def capacity(self) -> int:
        """Requests the bucket holds at once."""
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.rps or 1))

    @property
    def shared(self) -> bool:
        """Whether there is a shared bucket at all (a rate or a token budget)."""
        return self.rps is not None or self.tpm is not None


def _refill(pair: Any, now: float, rate: float, capacity: float) -> tuple[float, float]:
    """The tokens in a bucket and the time they are counted at: ``now``, or the bucket's
    own time when that is later. Workers read their clocks before their turn at the
    shared value, so a caller may come after one that read a later time; were the bucket
    set back to the earlier time, the next caller would count the same refill twice."""
    if not pair:
        return capacity, now
    tokens, at = float(pair[0]), float(pair[1])
    if now <= at:
        return tokens, at
    return min(capacity, tokens + (now - at) * rate), now


def take(
    value: Any | None, now: float, settings: LimitSettings, max_wait: float
) -> tuple[Any | None, tuple[bool, float]]:
    """Take a request token: ``(granted, wait)``.

    Granted: the call may go in ``wait`` seconds (0: now), its token reserved. Refused
    (the wait exceeds ``max_wait``): nothing is reserved and ``wait`` says how long a
    caller would have had to wait.
    """
    current = value or {}
    wait = 0.0
    requests: float | None = None
    at = now
    if settings.rps is not None:
        requests, at = _refill(current.get("r"), now, settings.rps, settings.capacity)
        wait = at - now
        if requests < 1:
            wait += (1 - requests) / settings.rps
    if settings.tpm is not None:
        rate = settings.tpm / 60.0
        tokens, spent_at = _refill(current.get("t"), now, rate, float(settings.tpm))
        if tokens < 0:
            wait = max(wait, spent_at - now - tokens / rate)
    if wait > max_wait:
        return value, (False, wait)
    if requests is None:
        return value, (True, wait)
    return {**current, "r": [requests - 1, at]}, (True, wait)


def spend(value: Any | None, now: float, settings: LimitSettings, tokens: int) -> Any | None:
    """The bucket after a reply that used ``tokens`` model tokens (it may go into debt)."""
    if settings.tpm is None or tokens <= 0:
        return value
    current = value or {}
    left, at = _refill(current.get("t"), now, settings.tpm / 60.0, float(settings.tpm))
    return {**current, "t": [left - tokens, at]}
