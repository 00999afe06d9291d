"""What a check found: a provider's status, read from a reply or an error in a few words."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from regen.foundation import ConfigError
from regen.providers import ProviderConfig, ProviderError
from regen.store import HealthCheck

Status = Literal["healthy", "unhealthy", "unknown"]

HEALTHY: Status = "healthy"
UNHEALTHY: Status = "unhealthy"
UNKNOWN: Status = "unknown"

_REMAINING = "x-ratelimit-remaining-"
_LIMIT = "x-ratelimit-limit-"


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """A provider's health as last checked (the paper pipeline's ``HealthStatus``).

    ``status`` is ``unknown`` before the first check. ``error`` is a few words (``401``,
    ``timeout``, ``rate limited``), never a provider's message. ``last_check`` and
    ``next_check`` are Unix times; ``next_check`` is set while the provider asked checks to
    wait (``Retry-After``). ``quota_remaining`` is a percentage, when the provider reports
    one. ``kind`` and ``source`` come from the registry (``source`` says
    ``built-in simulator`` for the simulator regen falls back to). ``breaker``: the
    provider's circuit breaker as last read (``closed``, ``half_open``, ``open``: the
    worst of its models' breakers), with ``breaker_retry_after`` seconds until an open
    one lets a call through; ``None`` before it was read.
    """

    name: str
    status: Status = UNKNOWN
    latency_ms: float | None = None
    error: str | None = None
    last_check: float | None = None
    quota_remaining: float | None = None
    next_check: float | None = None
    kind: str | None = None
    source: str | None = None
    breaker: str | None = None
    breaker_retry_after: float | None = None

    @classmethod
    def unknown(cls, config: ProviderConfig) -> ProviderHealth:
        """A provider not checked yet."""
        return cls(config.name, kind=config.kind, source=config.source)

    @property
    def healthy(self) -> bool:
        """Whether the last check found the provider fine."""
        return self.status == HEALTHY

    def record(self) -> HealthCheck:
        """The check as the store keeps it."""
        assert self.last_check is not None, "an unchecked provider has nothing to record"
        return HealthCheck(
            provider=self.name,
            at=self.last_check,
            status=self.status,
            latency_ms=self.latency_ms,
            error=self.error,
            quota_remaining=self.quota_remaining,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field."""
        return asdict(self)


def check_to_dict(check: HealthCheck) -> dict[str, Any]:
    """A stored check with the field names of :class:`ProviderHealth`."""
    return {
        "name": check.provider,
        "status": check.status,
        "latency_ms": check.latency_ms,
        "error": check.error,
        "last_check": check.at,
        "quota_remaining": check.quota_remaining,
    }


def quota_remaining(headers: Mapping[str, str]) -> float | None:
    """The percentage left of the tightest ``x-ratelimit-*`` family (requests, tokens, …):
    ``remaining / limit × 100``, rounded to 0.01; ``None`` when no family is reported."""
    lowered = {str(key).lower(): str(value) for key, value in headers.items()}
    found: list[float] = []
    for key, raw in lowered.items():
        if not key.startswith(_REMAINING):
            continue
        family = key.removeprefix(_REMAINING)
        remaining, limit = _number(raw), _number(lowered.get(_LIMIT + family))
        if remaining is not None and limit is not None and limit > 0:
            found.append(min(100.0, max(0.0, remaining / limit * 100)))
    return round(min(found), 2) if found else None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def short_error(exc: BaseException) -> str:
    """A few words for what went wrong, never the provider's message (which may quote a
    key): ``401``, ``403``, ``rate limited``, ``quota exhausted``, ``timeout``,
    ``connection``, the status of another HTTP error (``500``, ``503``), ``bad response``,
    ``no key``."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConfigError):
        return "no key"
    if not isinstance(exc, ProviderError):
        return "error"
    status, kind = exc.status, str(exc.kind)
    if status in (401, 403):
        return str(status)
    if kind == "quota_exhausted":
        return "quota exhausted"
    if status == 429 or kind == "rate_limited":
        return "rate limited"
    if kind == "unavailable":
        return "breaker open"
    if kind in ("timeout", "connection"):
        return kind
    if status is not None and status >= 400:
        return str(status)
    if kind == "bad_response":
        return "bad response"
    return kind.replace("_", " ")
