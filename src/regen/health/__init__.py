"""Provider health: every provider of a registry checked with one cheap request on a
schedule (default every 60 s, 5 s timeout), its status, latency, error and quota served at
once from memory, each check kept in the store.

    async with Registry.load() as registry, HealthMonitor(registry, store=store) as monitor:
        ...
        print([s.to_dict() for s in monitor.statuses()])
"""

from __future__ import annotations

from regen.health._alert_settings import AlertSettings
from regen.health._alerts import Alert, AlertWatcher
from regen.health._monitor import HealthMonitor, UnknownProvider
from regen.health._settings import DEFAULT_INTERVAL, DEFAULT_TIMEOUT, HealthSettings
from regen.health._stats import (
    BREAKER_STATES,
    COUNTERS,
    KindStats,
    ProviderStats,
    breaker_state,
    provider_stats,
    summarise,
)
from regen.health._status import (
    HEALTHY,
    UNHEALTHY,
    UNKNOWN,
    ProviderHealth,
    Status,
    check_to_dict,
    quota_remaining,
    short_error,
)

__all__ = [
    "BREAKER_STATES",
    "COUNTERS",
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "HEALTHY",
    "UNHEALTHY",
    "UNKNOWN",
    "Alert",
    "AlertSettings",
    "AlertWatcher",
    "HealthMonitor",
    "HealthSettings",
    "KindStats",
    "ProviderHealth",
    "ProviderStats",
    "Status",
    "UnknownProvider",
    "breaker_state",
    "check_to_dict",
    "provider_stats",
    "quota_remaining",
    "short_error",
    "summarise",
]
