"""One provider's guard: its circuit breaker, its shared rate limit, its adaptive
concurrency and its counters, around every call an adapter makes.

An attempt goes through :meth:`Guard.run`: the breaker admits it (or refuses it at once with
:class:`Unavailable`), this process's concurrency gives it a slot, the call runs, and its
outcome goes back to the breaker and the counters. Each HTTP request inside the attempt
(a submission, every poll) first takes a token from the shared limit (:meth:`Guard.pace`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from regen.providers import _breaker, _limiter
from regen.providers._breaker import Admission, BreakerSettings, breaker_key
from regen.providers._concurrency import AdaptiveLimit
from regen.providers._errors import Throttled, Unavailable
from regen.providers._limiter import LimitSettings, limit_key
from regen.providers._shared_state import SharedState
from regen.retry import Attempt, Kind, Policy, classify, current_clock, remaining

T = TypeVar("T")

logger = logging.getLogger("regen.providers")

#: How long a probe holds its slot when its attempt has no timeout of its own.
DEFAULT_PROBE_LEASE = 300.0
#: How long a call may wait for a rate-limit token when its attempt has no timeout.
DEFAULT_MAX_WAIT = 60.0

_CANCELLED = Kind.UNKNOWN  # a probe cut short proves nothing: its slot is freed


class Guard:
    """The breaker, rate limit, concurrency and counters of provider ``name``.

    ``state`` is where breaker and limit values and counters live; a registry swaps it for
    a shared one with :meth:`regen.providers.Registry.use_state`.
    """

    def __init__(
        self,
        name: str,
        state: SharedState,
        *,
        breaker: BreakerSettings | None = None,
        limit: LimitSettings | None = None,
    ) -> None:
        self.name = name
        self.state = state
        self.breaker = breaker or BreakerSettings()
        self.limit = limit or LimitSettings()
        self.concurrency = AdaptiveLimit(self.limit.concurrency, adaptive=self.limit.adaptive)
        self._counting: dict[int, tuple[Policy, Policy]] = {}

    def __repr__(self) -> str:
        return f"Guard({self.name!r}, {self.breaker}, {self.limit})"

    # --- counters ------------------------------------------------------------------------

    async def count(self, name: str, kind: Kind | str | None = None, n: int = 1) -> None:
        """Add ``n`` to this provider's counter ``name`` (per failure ``kind`` if given)."""
        key = (self.name, str(kind) if kind else "", name)
        await self.state.count({key: n}, current_clock().wall())

    def counting(self, policy: Policy) -> Policy:
        """``policy`` with hooks that count its retries and give-ups for this provider."""
        cached = self._counting.get(id(policy))
        if cached is not None and cached[0] is policy:
            return cached[1]
        user_retry, user_give_up = policy.on_retry, policy.on_give_up

        async def on_retry(attempt: Attempt) -> None:
            # Retries per attempt sent: a call this process held back (an open breaker,
            # counted in saved_by_breaker; no call slot) reached no provider.
            if not isinstance(attempt.error, (Unavailable, Throttled)):
                await self.count("retries", attempt.kind)
            if user_retry is not None:
                outcome = user_retry(attempt)
                if isinstance(outcome, Awaitable):
                    await outcome

        async def on_give_up(attempt: Attempt) -> None:
            await self.count("give_ups", attempt.kind)
            if user_give_up is not None:
                outcome = user_give_up(attempt)
                if isinstance(outcome, Awaitable):
                    await outcome

        counted = policy.replace(on_retry=on_retry, on_give_up=on_give_up)
        if len(self._counting) >= 64:
            self._counting.clear()
        self._counting[id(policy)] = (policy, counted)
        return counted

    # --- one attempt -----------------------------------------------------------------------

    async def run(self, model: str | None, call: Callable[[], Awaitable[T]]) -> T:
        """Run one attempt of a call to this provider (``model`` picks its breaker)."""
        async with self.attempt(model):
            return await call()

    @contextlib.asynccontextmanager
    async def attempt(self, model: str | None) -> AsyncIterator[None]:
        """The block of one attempt (a stream, say): admitted by the breaker on entry
        (:class:`Unavailable` when it is open), its outcome recorded on exit."""
        key = breaker_key(self.name, model)
        left = remaining()
        admission = await self._admit(key, left)
        try:
            started = await self.concurrency.acquire(DEFAULT_MAX_WAIT if left is None else left)
        except TimeoutError as exc:
            await self._record(key, admission, _CANCELLED, None)
            wait = float(exc.args[0]) if exc.args else 1.0
            limit = self.concurrency.limit
            why = (
                f"new calls are held {self.concurrency.wait_needed():.1f} s more for the "
                "provider's Retry-After"
                if self.concurrency.wait_needed() > 0 or limit is None
                else f"this process runs {limit:g} at once after rate limits"
            )
            raise Throttled(
                f"{self.name}: no call slot free within the attempt's time left ({why})",
                wait,
                provider=self.name,
            ) from None
        try:
            yield
        except Exception as exc:
            failure = classify(exc)
            kind, retry_after = failure.kind, failure.retry_after
            if kind is Kind.RATE_LIMITED and not failure.sent:
                kind = _CANCELLED  # held back by our own limit: nothing learned of the provider
            limited = kind is Kind.RATE_LIMITED
            await self.concurrency.release(started, rate_limited=limited, retry_after=retry_after)
            counts = {(self.name, "", "attempts"): 1, (self.name, str(failure.kind), "failures"): 1}
            changed = await self._record(key, admission, kind, retry_after)
            if changed in ("opened", "reopened", "cooldown"):
                counts[(self.name, str(kind), "breaker_opened")] = 1
            await self.state.count(counts, current_clock().wall())
            raise
        except BaseException:  # cancelled: no outcome, but the slots are given back
            await self.concurrency.release(started, rate_limited=False, retry_after=None)
            if admission.probe:
                await self._record(key, admission, _CANCELLED, None)
            raise
        await self.concurrency.release(started, rate_limited=False, retry_after=None)
        if admission.track:
            await self._record(key, admission, None, None)
        await self.state.count({(self.name, "", "attempts"): 1}, current_clock().wall())

    async def _admit(self, key: str, left: float | None) -> Admission:
        if not self.breaker.enabled:
            return Admission(True)
        now = current_clock().wall()
        lease = DEFAULT_PROBE_LEASE if left is None else max(left, 1.0)
        settings = self.breaker
        admission = await self.state.update(
            key, lambda value: _breaker.admit(value, now, settings, lease)
        )
        if not admission.allowed:
            await self.state.count({(self.name, "", "saved_by_breaker"): 1}, now)
            why = "a burst of rate limits" if admission.cooldown else "an outage"
            raise Unavailable(
                f"{self.name}: circuit breaker open after {why}; calls go through again "
                f"in {admission.retry_after:.1f} s",
                admission.retry_after,
                provider=self.name,
            )
        return admission

    async def _record(
        self,
        key: str,
        admission: Admission,
        kind: Kind | None,
        retry_after: float | None,
        *,
        observed: bool = False,
    ) -> str | None:
        if not self.breaker.enabled:
            return None
        now = current_clock().wall()
        settings = self.breaker
        changed = await self.state.update(
            key,
            lambda value: _breaker.record(
                value,
                now,
                settings,
                kind=kind,
                admission=admission,
                retry_after=retry_after,
                observed=observed,
            ),
        )
        if changed is not None:
            logger.warning(
                "%s: circuit breaker %s (%s)",
                self.name,
                changed,
                kind or "answered",
                extra={
                    "provider": self.name,
                    "breaker": key,
                    "transition": changed,
                    "kind": str(kind) if kind else None,
                },
            )
        return changed

    async def observe(self, kind: Kind | None, model: str | None = None) -> str | None:
        """Tell the breaker what a call made elsewhere learned (a health check): ``kind``
        of its failure, ``None`` for an answer. Returns the breaker's change, if any."""
        key = breaker_key(self.name, model)
        return await self._record(key, Admission(True), kind, None, observed=True)

    # --- one request -------------------------------------------------------------------

    async def pace(self) -> None:
        """Take a token from the shared rate limit before a request, waiting for it when
        the attempt has time; :class:`Throttled` when it has not."""
        settings = self.limit
        if not settings.shared:
            return
        left = remaining()
        max_wait = DEFAULT_MAX_WAIT if left is None else left
        clock = current_clock()

        def take(value: Any | None) -> tuple[Any | None, tuple[bool, float, float]]:
            # The clock is read at each try of the shared value (a busy one may take several)
            # and the request goes at its token's time however long the turn took: a wait
            # counted from an earlier reading would send it late, in a burst with the next.
            now = clock.wall()
            new, (granted, wait) = _limiter.take(value, now, settings, max_wait)
            return new, (granted, wait, now + wait)

        granted, wait, at = await self.state.update(limit_key(self.name), take)
        if not granted:
            raise Throttled(
                f"{self.name}: over its rate limit ({_describe(settings)}); the next request "
                f"may go in {wait:.2f} s, past the attempt's time left",
                wait,
                provider=self.name,
            )
        delay = at - clock.wall()
        if delay > 0:
            await clock.asleep(delay)

    async def spend(self, tokens: int) -> None:
        """Count ``tokens`` model tokens a reply used against the tokens-per-minute limit."""
        settings = self.limit
        if settings.tpm is None or tokens <= 0:
            return
        now = current_clock().wall()
        await self.state.update(
            limit_key(self.name),
            lambda value: (_limiter.spend(value, now, settings, tokens), None),
        )

    def rate_limited(self, retry_after: float | None) -> None:
        """A reply said 429: hold this process's new calls for its ``Retry-After``."""
        if retry_after:
            self.concurrency.hold(retry_after)

    async def status(self) -> dict[str, dict[str, Any]]:
        """Every breaker of this provider by key, as :func:`regen.providers.breaker_status`."""
        now = current_clock().wall()
        values: Mapping[str, Any] = await self.state.read(breaker_key(self.name))
        own = {
            key: value
            for key, value in values.items()
            if key == breaker_key(self.name) or key.startswith(breaker_key(self.name) + ":")
        }
        return {key: _breaker.breaker_status(value, now) for key, value in own.items()}


def _describe(settings: LimitSettings) -> str:
    parts = []
    if settings.rps is not None:
        parts.append(f"{settings.rps:g} requests/s, burst {settings.capacity}")
    if settings.tpm is not None:
        parts.append(f"{settings.tpm} tokens/min")
    return ", ".join(parts)
