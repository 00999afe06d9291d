"""Alerts: a provider whose retry rate or breaker crosses its threshold is announced once,
to a command and/or a webhook, and announced again when it is back under.

The watcher reads the provider counters and breakers of a
:class:`regen.providers.SharedState`. Each condition's last announced state is kept in
that state too (``alert:<provider>:<condition>``), changed atomically: with a store-backed
state, of all the workers and servers watching one database, exactly one announces each
crossing. Sending never raises: a command or webhook that fails or hangs past its timeout
is logged, and the watcher goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from regen.foundation import mask_data, mask_secrets
from regen.health._alert_settings import AlertSettings
from regen.health._stats import ProviderStats, provider_stats
from regen.providers import SharedState

logger = logging.getLogger("regen.health")

RETRY_RATE = "retry_rate"
BREAKER_OPEN = "breaker_open"
FIRING = "firing"
RESOLVED = "resolved"
_ALERT_PREFIX = "alert:"


@dataclass(frozen=True, slots=True)
class Alert:
    """One announcement: ``condition`` (``retry_rate`` or ``breaker_open``) of
    ``provider`` began (``firing``) or ended (``resolved``)."""

    condition: str
    status: str
    provider: str
    message: str
    at: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document a command reads on stdin and a webhook receives."""
        document: dict[str, Any] = mask_data(
            {
                "alert": self.condition,
                "status": self.status,
                "provider": self.provider,
                "message": self.message,
                "at": self.at,
                "host": socket.gethostname(),
                **self.details,
            }
        )
        return document

    def environment(self) -> dict[str, str]:
        """The alert as ``REGEN_ALERT_*`` variables for a command (beside its JSON)."""
        return {
            "REGEN_ALERT_NAME": self.condition,
            "REGEN_ALERT_STATUS": self.status,
            "REGEN_ALERT_PROVIDER": mask_secrets(self.provider),
            "REGEN_ALERT_MESSAGE": mask_secrets(self.message),
            "REGEN_ALERT_AT": f"{self.at:.3f}",
            "REGEN_ALERT_JSON": json.dumps(self.to_dict(), ensure_ascii=False),
        }


def conditions(
    stats: Iterable[ProviderStats], settings: AlertSettings
) -> dict[tuple[str, str], bool]:
    """Each ``(provider, condition)`` the stats can judge, and whether it holds now."""
    found: dict[tuple[str, str], bool] = {}
    for s in stats:
        if not s.provider:
            continue  # the engine's own savings: nothing to alert about
        rate = s.retry_rate
        if s["attempts"] >= settings.min_attempts and rate is not None:
            found[s.provider, RETRY_RATE] = rate >= settings.retry_rate
        elif s["attempts"] == 0:
            found[s.provider, RETRY_RATE] = False  # no traffic: nothing is failing
        if settings.breaker_open:
            found[s.provider, BREAKER_OPEN] = s.breaker == "open"
    return found


class AlertWatcher:
    """Looks at ``state`` every ``settings.interval_s`` seconds and announces crossings.

    ``send``: where alerts go (default: the settings' command and webhook);
    ``clock``: seconds since the epoch (``time.time``).
    """

    def __init__(
        self,
        state: SharedState,
        settings: AlertSettings,
        *,
        send: Callable[[Alert], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.settings = settings
        self._send = send
        self._clock = clock
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AlertWatcher:
        """Watch in the background until the block ends."""
        self._stop.clear()
        self._task = asyncio.create_task(self.run(self._stop), name="regen-alerts")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def check(self) -> list[Alert]:
        """Look once; announce and return the crossings since the last look."""
        now = self._clock()
        stats = await provider_stats(self.state, now - self.settings.window_s)
        by_name = {s.provider: s for s in stats}
        held = {
            key.removeprefix(_ALERT_PREFIX): value
            for key, value in (await self.state.read(_ALERT_PREFIX)).items()
        }
        judged = conditions(stats, self.settings)
        # A condition announced before but not judged now is over when nothing is left to
        # judge it by (its counts aged out of the window, its breaker reset); a retry rate
        # over too few attempts to judge stays as it was.
        for name in held:
            provider, _, condition = name.rpartition(":")
            seen = by_name.get(provider)
            if condition == RETRY_RATE and seen is not None and seen["attempts"] > 0:
                continue
            judged.setdefault((provider, condition), False)
        alerts = []
        for (provider, condition), holds in sorted(judged.items()):
            if holds == (f"{provider}:{condition}" in held):
                continue
            if await self._claim(provider, condition, holds, now):
                alert = self._alert(provider, condition, holds, by_name.get(provider), now)
                alerts.append(alert)
                await self._deliver(alert)
        return alerts

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """:meth:`check` every interval until ``stop`` is set (or the task is cancelled);
        a failed look is logged and tried again at the next."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.check()
            except Exception as exc:
                logger.warning(
                    "regen: the alert watcher could not read the provider state",
                    extra={"error": mask_secrets(str(exc))},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.interval_s)

    async def _claim(self, provider: str, condition: str, holds: bool, now: float) -> bool:
        """Record the new state of the condition; whether this process made the change
        (another watcher on the same state may have announced it first)."""

        def change(value: Any) -> tuple[Any, bool]:
            was = value is not None
            if was == holds:
                return value, False
            return ({"since": now} if holds else None), True

        return await self.state.update(f"{_ALERT_PREFIX}{provider}:{condition}", change)

    def _alert(
        self, provider: str, condition: str, holds: bool, stats: ProviderStats | None, now: float
    ) -> Alert:
        s = self.settings
        status = FIRING if holds else RESOLVED
        attempts = 0 if stats is None else stats["attempts"]
        retries = 0 if stats is None else stats["retries"]
        rate = None if stats is None else stats.retry_rate
        details: dict[str, Any] = {"window_s": s.window_s}
        if condition == RETRY_RATE:
            details.update(
                retry_rate=rate, attempts=attempts, retries=retries, threshold=s.retry_rate
            )
            shown = "no attempts" if rate is None else f"{rate:.0%}"
            message = (
                f"{provider}: {shown} of attempts retried over the last {s.window_s:g} s "
                f"({retries} retries, {attempts} attempts; alert at {s.retry_rate:.0%})"
                if holds
                else f"{provider}: retry rate back under {s.retry_rate:.0%} ({shown} over the "
                f"last {s.window_s:g} s)"
            )
        else:
            breaker = None if stats is None else stats.breaker
            details.update(breaker=breaker or "closed")
            message = (
                f"{provider}: circuit breaker open; calls are refused until it lets a probe through"
                if holds
                else f"{provider}: circuit breaker no longer open ({breaker or 'closed'})"
            )
        return Alert(condition, status, provider, message, now, details)

    async def _deliver(self, alert: Alert) -> None:
        log = logger.warning if alert.status == FIRING else logger.info
        document = alert.to_dict()
        log(
            "regen alert: %s",
            document["message"],
            extra={
                "alert": alert.condition,
                "status": alert.status,
                "provider": document["provider"],
            },
        )
        if self._send is not None:
            outcome = self._send(alert)
            if asyncio.iscoroutine(outcome):
                await outcome
            return
        if self.settings.command is not None:
            await run_command(self.settings.command, alert, self.settings.timeout_s)
        if self.settings.webhook is not None:
            await post_webhook(self.settings.webhook, alert, self.settings.timeout_s)


async def run_command(command: str, alert: Alert, limit_s: float) -> bool:
    """Run ``command`` with the alert as JSON on stdin and in ``REGEN_ALERT_*``
    variables; whether it exited 0 in time (a failure is logged, not raised)."""
    argv = shlex.split(command)
    body = json.dumps(alert.to_dict(), ensure_ascii=False).encode()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **alert.environment()},
        )
    except OSError as exc:
        _failed("command", argv[0], str(exc))
        return False
    try:
        _, err = await asyncio.wait_for(process.communicate(body), limit_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        _failed("command", argv[0], f"still running after {limit_s:g} s; killed")
        return False
    if process.returncode != 0:
        tail = err.decode(errors="replace").strip()[-300:]
        _failed("command", argv[0], f"exit status {process.returncode}: {tail}")
        return False
    return True


async def post_webhook(url: str, alert: Alert, limit_s: float) -> bool:
    """POST the alert as JSON to ``url``; whether it answered 2xx in time (a failure is
    logged, never raised, and the URL never shown beyond its host: it may hold a token)."""
    body = json.dumps(alert.to_dict(), ensure_ascii=False).encode()
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "regen-alerts"},
        method="POST",
    )

    def post() -> int:
        with urllib.request.urlopen(request, timeout=limit_s) as response:
            return int(response.status)

    where = urlsplit(url).hostname or "?"
    try:
        status = await asyncio.wait_for(asyncio.to_thread(post), limit_s + 1)
    except urllib.error.HTTPError as exc:
        _failed("webhook", where, f"HTTP {exc.code}")
        return False
    except (OSError, TimeoutError) as exc:
        _failed("webhook", where, str(exc) or type(exc).__name__)
        return False
    return 200 <= status < 300


def _failed(what: str, where: str, error: str) -> None:
    logger.warning(
        "regen: the alert %s failed",
        what,
        extra={"target": mask_secrets(where), "error": mask_secrets(error)},
    )
