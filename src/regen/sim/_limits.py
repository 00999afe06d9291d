"""An outage window and a per-second request limit: the simulator as a provider that goes
down for a while, or that refuses clients polling faster than it allows.

Both look at every API request (the ``/_sim/*`` control routes and file downloads excepted)
before any fault is chosen: a provider that is down answers 503 whatever was asked of it.
"""

from __future__ import annotations

import math
import time
from typing import Any


class Outage:
    """From the ``after``-th API request on, every request is answered 503 for ``seconds``.

    ``after=1`` starts the outage with the first request; :meth:`start` starts one now.
    Requests are counted from the last reset, so a test that resets the simulator gets the
    same outage again.
    """

    def __init__(self, after: int | None = None, seconds: float = 0.0) -> None:
        self.configure(after, seconds)

    def configure(self, after: int | None, seconds: float) -> None:
        """Plan an outage from request ``after`` on (``None``: none) lasting ``seconds``."""
        if after is not None and after < 1:
            raise ValueError(f"outage after={after!r}: expected a request number ≥ 1")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"outage for={seconds!r}: expected a number of seconds ≥ 0")
        self.after = after
        self.seconds = seconds
        self.reset()

    def reset(self) -> None:
        """Count requests from zero again; a running outage ends."""
        self.seen = 0
        self.started: float | None = None
        self.answered = 0

    def start(self, seconds: float) -> None:
        """Go down now for ``seconds``."""
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"outage for={seconds!r}: expected a number of seconds > 0")
        self.after, self.seconds = None, seconds
        self.started = time.monotonic()

    def stop(self) -> None:
        """Come back now; no outage is planned any more."""
        self.after, self.started = None, None

    def hit(self) -> float | None:
        """Count a request: the seconds the outage has left if it answers it, else ``None``."""
        self.seen += 1
        now = time.monotonic()
        if self.started is None and self.after is not None and self.seen >= self.after:
            self.started = now
        if self.started is None:
            return None
        left = self.seconds - (now - self.started)
        if left <= 0:
            self.after = None  # over: the provider is back for good
            self.started = None
            return None
        self.answered += 1
        return left

    def describe(self) -> dict[str, Any]:
        """What the outage is doing, for ``/_sim/outage`` and the stats."""
        left = None
        if self.started is not None:
            left = max(0.0, self.seconds - (time.monotonic() - self.started))
        return {
            "after": self.after,
            "for": self.seconds,
            "active": bool(left),
            "left": None if left is None else round(left, 3),
            "requests_seen": self.seen,
            "answered": self.answered,
        }


class RequestBucket:
    """A token bucket of ``rps`` requests a second holding at most ``burst``.

    A request takes a token; without one it is refused, told how long until the next token.
    """

    def __init__(self, rps: float | None = None, burst: int | None = None) -> None:
        self.configure(rps, burst)

    def configure(self, rps: float | None, burst: int | None) -> None:
        """Set the limit (``rps=None``: none). ``burst`` defaults to ``ceil(rps)``."""
        if rps is not None and (not math.isfinite(rps) or rps <= 0):
            raise ValueError(f"rps={rps!r}: expected a number of requests a second > 0")
        if burst is not None and burst < 1:
            raise ValueError(f"burst={burst!r}: expected a whole number ≥ 1")
        self.rps = rps
        self.burst = burst if burst is not None else (math.ceil(rps) if rps else None)
        self.reset()

    def reset(self) -> None:
        """A full bucket; the refusals counted from zero."""
        self.tokens = float(self.burst or 0)
        self.at = time.monotonic()
        self.answered = 0

    def take(self) -> float | None:
        """Take a token: ``None`` when the request may go on, else the seconds to wait."""
        if self.rps is None or self.burst is None:
            return None
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rps)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        self.answered += 1
        return (1 - self.tokens) / self.rps

    def describe(self) -> dict[str, Any]:
        """The limit and how many requests it refused, for ``/_sim/limit`` and the stats."""
        return {"rps": self.rps, "burst": self.burst, "answered": self.answered}
