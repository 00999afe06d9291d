"""The health monitor: every provider of a registry checked on a schedule, one at a time each.

Each check's outcome goes to the provider's circuit breaker (kept in the registry's
:class:`regen.providers.SharedState`, shared by every worker when the engine supplies it):
a check that meets an outage (a timeout, a connection failure, a 5xx, a broken reply)
counts as an outage failure; one that is answered counts as a success, which closes a
half-open breaker as a probe would. The breaker's state is shown beside the health.

Each check is one cheap request (:meth:`regen.providers.BaseProvider.probe`), sent once
under the check timeout. Providers are checked concurrently; a check asked for while one
of the same provider is in flight waits for that one instead of sending another. A reply
carrying ``Retry-After`` (a 429) holds the provider's next check until that time has
passed, so checks never add to a rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import Any, Self

from regen.foundation import ConfigError, RegenError, mask_data
from regen.health._settings import HealthSettings
from regen.health._stats import BREAKER_STATES
from regen.health._status import HEALTHY, UNHEALTHY, ProviderHealth, quota_remaining, short_error
from regen.providers import OUTAGE_KINDS, ProviderError, Registry, redact_url
from regen.store import HealthCheck, Store

logger = logging.getLogger("regen.health")

#: What a caller bounded by the check timeout waits beyond it: the moment a check that
#: timed out needs to record its ``timeout``.
_SETTLE = 0.1
#: The failure kind a check that ran out of time tells the breaker.
_TIMEOUT = next(kind for kind in OUTAGE_KINDS if kind == "timeout")


class UnknownProvider(RegenError):
    """A health status asked for a name that is neither a provider the registry declares
    nor a model exactly one of them serves (``serving``: the providers of a model that
    several serve)."""

    def __init__(self, name: str, known: Iterable[str], serving: Iterable[str] = ()) -> None:
        names = ", ".join(known) or "none"
        several = ", ".join(serving)
        if several:
            message = f"model {name!r} is served by {several}: ask for one of those providers"
        else:
            message = (
                f"unknown provider {name!r}: the monitored providers are {names} "
                "(a model's name is accepted when one provider serves it)"
            )
        super().__init__(message)
        self.name = name


class HealthMonitor:
    """Checks every provider of ``registry``, every ``settings.interval`` seconds once
    started, each check bounded by ``settings.timeout`` (default: from the environment, see
    :class:`HealthSettings`). Each check is kept in ``store`` when one is given.

    ``async with HealthMonitor(registry) as monitor:`` runs the schedule in the background
    until the block ends; :meth:`check` checks now; :meth:`statuses` answers at once from
    the latest checks. The registry stays the caller's to close.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        store: Store | None = None,
        settings: HealthSettings | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.settings = settings or HealthSettings.from_env()
        self._statuses: dict[str, ProviderHealth] = {}
        self._not_before: dict[str, float] = {}  # time.monotonic() before which none is sent
        self._inflight: dict[str, asyncio.Task[ProviderHealth]] = {}
        self._schedules: list[asyncio.Task[None]] = []
        self._breakers: dict[str, tuple[str, float]] = {}  # provider: (state, retry_after)

    def __repr__(self) -> str:
        return (
            f"HealthMonitor({', '.join(self.names()) or 'no providers'}; "
            f"every {self.interval:g} s, timeout {self.timeout:g} s)"
        )

    @property
    def interval(self) -> float:
        """Seconds between two scheduled checks of one provider."""
        return self.settings.interval

    @property
    def timeout(self) -> float:
        """Seconds one check may take."""
        return self.settings.timeout

    @property
    def running(self) -> bool:
        """Whether the schedule runs (between :meth:`start` and :meth:`stop`)."""
        return bool(self._schedules)

    # --- reading (instant) -------------------------------------------------------------------

    def names(self) -> list[str]:
        """The monitored providers' names, sorted."""
        return self.registry.names()

    def provider_of(self, name: str) -> str:
        """The provider ``name`` stands for: a provider's own name, or a model (chat or
        image) that exactly one provider is configured with; else :class:`UnknownProvider`."""
        if name in self.registry:
            return name
        configs = (self.registry.config(provider) for provider in self.names())
        serving = [c.name for c in configs if name in (c.model, c.image_model)]
        if len(serving) == 1:
            return serving[0]
        raise UnknownProvider(name, self.names(), serving if len(serving) > 1 else ())

    def status(self, name: str) -> ProviderHealth:
        """A provider's latest status (``unknown`` before its first check); ``name`` may
        be a model (see :meth:`provider_of`)."""
        name = self.provider_of(name)
        found = self._statuses.get(name)
        status = found if found is not None else ProviderHealth.unknown(self.registry.config(name))
        breaker = self._breakers.get(name)
        if breaker is None:
            return status
        return dataclasses.replace(status, breaker=breaker[0], breaker_retry_after=breaker[1])

    def statuses(self) -> list[ProviderHealth]:
        """Every provider's latest status, by name."""
        return [self.status(name) for name in self.names()]

    def all_healthy(self) -> bool:
        """Whether every provider's latest check found it fine (and there is one)."""
        statuses = self.statuses()
        return bool(statuses) and all(s.healthy for s in statuses)

    def config(self) -> list[dict[str, Any]]:
        """Every provider's settings, safe to show: keys masked, header values left out,
        base URLs without credentials or query (:meth:`Registry.describe`)."""
        described = []
        for entry in self.registry.describe():
            entry["base_url"] = redact_url(str(entry["base_url"]))
            described.append(mask_data(entry))
        return described

    async def history(self, name: str, limit: int = 100) -> list[HealthCheck]:
        """A provider's recorded checks, newest first (none without a store); ``name``
        may be a model (see :meth:`provider_of`)."""
        name = self.provider_of(name)
        if self.store is None:
            return []
        return await self.store.health_history(name, limit)

    # --- checking ----------------------------------------------------------------------------

    async def check(
        self, name: str | None = None, *, wait: float | None = None
    ) -> list[ProviderHealth]:
        """Check one provider (or all) now, concurrently, and return their statuses.

        A provider whose check is in flight is not asked again: its running check is awaited.
        One waiting out a ``Retry-After`` is not asked at all: its latest status comes back,
        with ``next_check`` set. ``wait``: return after that many seconds at most, with the
        latest status of a check still running (which goes on in the background).
        ``name`` may be a model (see :meth:`provider_of`).
        """
        names = self.names() if name is None else [self.provider_of(name)]
        tasks = [self._checking(n) for n in names]
        if tasks:
            if wait is None:
                await asyncio.wait(tasks)
            else:
                await asyncio.wait(tasks, timeout=wait + _SETTLE)
        return [self.status(n) for n in names]

    def _checking(self, name: str) -> asyncio.Task[ProviderHealth]:
        """The provider's check in flight, or a new one."""
        task = self._inflight.get(name)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(
                self._check(name), name=f"regen-health-{name}"
            )
            self._inflight[name] = task
        return task

    async def _check(self, name: str) -> ProviderHealth:
        config = self.registry.config(name)
        held = self._not_before.get(name, 0.0) - time.monotonic()
        if held > 0:
            return self.status(name)
        started, at = time.monotonic(), time.time()
        latency: float | None = None
        quota: float | None = None
        error: str | None = None
        retry_after: float | None = None
        tell = False  # whether the breaker learns from this check...
        told: Any = None  # ...and what: the failure's kind (None: answered fine)
        try:
            adapter = self.registry.get(name)
            async with asyncio.timeout(self.timeout):
                response = await adapter.probe(timeout=self.timeout)
        except (TimeoutError, ConfigError, ProviderError) as exc:
            error = short_error(exc)
            if isinstance(exc, TimeoutError):
                tell, told = True, _TIMEOUT
            if isinstance(exc, ProviderError):
                retry_after = exc.failure.retry_after
                # An outage, or an answer (a refused key, a rate limit: the provider is up).
                tell = exc.failure.kind in OUTAGE_KINDS or exc.status is not None
                told = exc.failure.kind
                if exc.status is not None:  # the server answered: that took a while too
                    latency = _ms(time.monotonic() - started)
        except Exception as exc:  # a check reports; it never takes the monitor down
            error = short_error(exc)
            logger.warning(
                "health check of %s raised %s",
                name,
                type(exc).__name__,
                extra={"provider": name, "error": type(exc).__name__},
            )
        else:
            latency = _ms(time.monotonic() - started)
            quota = quota_remaining(response.headers)
            tell = True
        if tell:
            await self._feed_breaker(name, told)
        next_check: float | None = None
        if retry_after is not None and retry_after > 0:
            self._not_before[name] = time.monotonic() + retry_after
            next_check = at + retry_after
        else:
            self._not_before.pop(name, None)
        status = ProviderHealth(
            name=name,
            status=UNHEALTHY if error else HEALTHY,
            latency_ms=latency,
            error=error,
            last_check=at,
            quota_remaining=quota,
            next_check=next_check,
            kind=config.kind,
            source=config.source,
        )
        self._statuses[name] = status
        logger.info(
            "health check of %s: %s%s",
            name,
            status.status,
            f" ({error})" if error else "",
            extra={
                "provider": name,
                "status": status.status,
                "error": error,
                "latency_ms": latency,
            },
        )
        await self._record(status)
        await self.read_breakers()
        return self.status(name)

    async def _feed_breaker(self, name: str, kind: Any) -> None:
        """Tell the provider's breakers what the check learned: ``kind`` of its failure
        (an outage kind counts against the provider), ``None`` for an answer.

        Calls keep a breaker per model; a check proves the service as a whole, so it
        tells the breakers of the provider's default chat and image models and of every
        model that has one already."""
        try:
            guard = self.registry.guard(name)
            adapter = self.registry.get(name)
            models = {adapter.default_model("chat"), adapter.default_model("image")}
            prefix = f"breaker:{name}:"
            models |= {
                k.removeprefix(prefix)
                for k in await self.registry.breakers()
                if k.startswith(prefix)
            }
            chosen: list[str | None] = [*sorted(m for m in models if m)] or [None]
            changes = [await guard.observe(kind, model) for model in chosen]
        except Exception as exc:  # the check still reports; the breaker learns next time
            logger.warning(
                "health check of %s not told to its breaker: %s",
                name,
                type(exc).__name__,
                extra={"provider": name, "error": type(exc).__name__},
            )
            return
        for model, changed in zip(chosen, changes, strict=True):
            if changed is not None:
                logger.warning(
                    "health check of %s: circuit breaker %s",
                    name,
                    changed,
                    extra={"provider": name, "model": model, "breaker": changed},
                )

    async def read_breakers(self) -> None:
        """Read every provider's breaker now (:meth:`status` shows what was read last)."""
        try:
            found = await self.registry.breakers()
        except Exception as exc:
            logger.warning(
                "breakers not read: %s",
                type(exc).__name__,
                extra={"error": type(exc).__name__},
            )
            return
        worst: dict[str, tuple[str, float]] = {}
        for key, breaker in found.items():
            provider = key.removeprefix("breaker:").split(":", 1)[0]
            state = str(breaker.get("state", "closed"))
            if state not in BREAKER_STATES:
                continue
            wait = float(breaker.get("retry_after") or 0.0)
            held = worst.get(provider)
            if held is None or BREAKER_STATES[state] > BREAKER_STATES[held[0]]:
                worst[provider] = (state, wait)
        self._breakers = {name: worst.get(name, ("closed", 0.0)) for name in self.names()}

    async def _record(self, status: ProviderHealth) -> None:
        if self.store is None:
            return
        try:
            await self.store.add_health_check(status.record())
        except RegenError as exc:
            # The status is served from memory; a store that cannot take it loses history only.
            logger.warning(
                "health check of %s not recorded: %s",
                status.name,
                type(exc).__name__,
                extra={"provider": status.name, "error": type(exc).__name__},
            )

    def delay(self, name: str) -> float:
        """Seconds until the schedule checks ``name`` again after a check now: the interval,
        or longer while the provider asked to wait (``Retry-After``)."""
        held = self._not_before.get(name, 0.0) - time.monotonic()
        return max(self.interval, held)

    # --- the schedule ------------------------------------------------------------------------

    async def start(self) -> None:
        """Check every provider now, then every interval, in the background."""
        if self._schedules:
            return
        loop = asyncio.get_running_loop()
        self._schedules = [
            loop.create_task(self._every_interval(name), name=f"regen-health-schedule-{name}")
            for name in self.names()
        ]

    async def _every_interval(self, name: str) -> None:
        while True:
            try:
                await asyncio.shield(self._checking(name))
            except Exception:
                # A bug in one check must not end the provider's schedule.
                logger.exception("health check of %s failed", name, extra={"provider": name})
            await asyncio.sleep(self.delay(name))

    async def stop(self) -> None:
        """Stop the schedule and any check in flight."""
        tasks = [*self._schedules, *self._inflight.values()]
        self._schedules, self._inflight = [], {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
