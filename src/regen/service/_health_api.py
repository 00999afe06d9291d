"""Provider health over HTTP: the paper pipeline's ``/api/models/…`` routes on a
:class:`HealthMonitor`.

``health_router(monitor)`` gives an ``APIRouter`` to include in a FastAPI app; the app
starts and stops the monitor's schedule (``await monitor.start()`` / ``stop()`` in its
lifespan). Reading routes answer from memory at once; the ``check`` routes check now and
wait at most the check timeout.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from regen.health import HealthMonitor, ProviderHealth, UnknownProvider, check_to_dict


class ProviderHealthModel(BaseModel):
    """A provider's latest check (``unknown`` before the first), and its breaker."""

    name: str
    status: Literal["healthy", "unhealthy", "unknown"]
    latency_ms: float | None = Field(description="Round trip of the check, in milliseconds.")
    error: str | None = Field(
        description="A few words: 401, 403, timeout, rate limited, quota exhausted, "
        "connection, bad response, no key, or an HTTP status such as 503."
    )
    last_check: float | None = Field(description="Unix time of the check.")
    quota_remaining: float | None = Field(
        description="Percentage left of the tightest x-ratelimit-* family, when reported."
    )
    next_check: float | None = Field(
        description="Unix time before which the provider asked not to be checked (Retry-After)."
    )
    kind: str | None
    source: str | None = Field(description="Where the provider is declared.")
    breaker: Literal["closed", "half_open", "open"] | None = Field(
        default=None,
        description="The provider's circuit breaker (the worst of its models' breakers), "
        "shared by every worker on the database.",
    )
    breaker_retry_after: float | None = Field(
        default=None, description="Seconds until an open breaker lets a call through."
    )


class HealthReport(BaseModel):
    """Every provider's latest check."""

    providers: list[ProviderHealthModel]
    all_healthy: bool
    interval_s: float
    timeout_s: float


class HealthCheckModel(BaseModel):
    """One recorded check."""

    name: str
    status: Literal["healthy", "unhealthy"]
    latency_ms: float | None
    error: str | None
    last_check: float
    quota_remaining: float | None


class HealthHistory(BaseModel):
    """A provider's recorded checks, newest first."""

    name: str
    checks: list[HealthCheckModel]


class ProviderConfigModel(BaseModel):
    """A provider's settings, safe to show: the key masked, header values left out."""

    name: str
    kind: str
    base_url: str
    model: str | None
    image_model: str | None
    api_key: str | None = Field(description="Masked, e.g. sk-…abcd.")
    has_key: bool
    key_source: str | None
    headers: list[str] = Field(description="Names of the extra headers sent.")
    attempts: int | None
    timeout: float | None
    source: str


class ModelsConfig(BaseModel):
    """The configured providers and how they are checked."""

    providers: list[ProviderConfigModel]
    default: str | None
    interval_s: float
    timeout_s: float


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No provider of that name, nor a model only one provider serves."}
}


def health_router(monitor: HealthMonitor) -> APIRouter:
    """The routes ``/api/models/health…`` and ``/api/models/config`` on ``monitor``."""
    router = APIRouter(prefix="/api/models", tags=["provider health"])

    def report(statuses: list[ProviderHealth]) -> HealthReport:
        return HealthReport(
            providers=[ProviderHealthModel(**s.to_dict()) for s in statuses],
            all_healthy=bool(statuses) and all(s.healthy for s in statuses),
            interval_s=monitor.interval,
            timeout_s=monitor.timeout,
        )

    def provider_of(name: str) -> str:
        try:
            return monitor.provider_of(name)
        except UnknownProvider as exc:
            raise HTTPException(404, str(exc)) from exc

    @router.get("/health", summary="Every provider's health (cached, instant)")
    async def all_health() -> HealthReport:
        await monitor.read_breakers()
        return report(monitor.statuses())

    @router.post("/health/check", summary="Check every provider now")
    async def check_all() -> HealthReport:
        return report(await monitor.check(wait=monitor.timeout))

    @router.get(
        "/health/{name}",
        summary="One provider's health (by its name, or a model only it serves)",
        responses=_NOT_FOUND,
    )
    async def provider_health(name: str) -> ProviderHealthModel:
        if name == "check" and name not in monitor.registry:
            raise HTTPException(
                405, "checking every provider is POST /api/models/health/check", {"Allow": "POST"}
            )
        provider = provider_of(name)
        await monitor.read_breakers()
        return ProviderHealthModel(**monitor.status(provider).to_dict())

    @router.get(
        "/health/{name}/history", summary="One provider's recorded checks", responses=_NOT_FOUND
    )
    async def provider_history(
        name: str, limit: int = Query(100, ge=1, le=1000, description="How many, newest first.")
    ) -> HealthHistory:
        provider = provider_of(name)
        checks = await monitor.history(provider, limit)
        return HealthHistory(
            name=provider, checks=[HealthCheckModel(**check_to_dict(c)) for c in checks]
        )

    @router.post("/health/{name}/check", summary="Check one provider now", responses=_NOT_FOUND)
    async def check_provider(name: str) -> ProviderHealthModel:
        (status,) = await monitor.check(provider_of(name), wait=monitor.timeout)
        return ProviderHealthModel(**status.to_dict())

    @router.get("/config", summary="The configured providers, keys masked")
    async def models_config() -> ModelsConfig:
        return ModelsConfig(
            providers=[ProviderConfigModel(**entry) for entry in monitor.config()],
            default=monitor.registry.default,
            interval_s=monitor.interval,
            timeout_s=monitor.timeout,
        )

    return router
