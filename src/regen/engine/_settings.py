"""The engine's settings, read from ``REGEN_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from regen.foundation import env_bool, env_float, env_int


@dataclass(frozen=True, slots=True)
class Settings:
    """Lease length, clean-up windows and automatic retries.

    ``lease_ttl`` (``REGEN_LEASE_TTL_S``, 30 s): a run whose process stops heartbeating
    for this long may be taken over. ``checkpoint_retention_hours``
    (``REGEN_CHECKPOINT_RETENTION_HOURS``, 24): failed/partial/cancelled runs keep their
    checkpoints this long (then they are no longer resumable). ``run_retention_days``
    (``REGEN_RUN_RETENTION_DAYS``, 30): finished runs, their events and artifacts no run
    uses are kept this long. ``gc_interval`` (``REGEN_GC_INTERVAL_S``, 3600): how often a
    worker cleans up (0: never; ``regen gc`` by hand). ``auto_retry``
    (``REGEN_AUTO_RETRY``, on): set to 0 to switch off every flow's automatic retries.
    ``max_crashes`` (``REGEN_MAX_CRASHES``, 3): a run whose process was lost this many
    times (its lease expired mid-run) fails with kind ``crashed`` instead of being taken
    over again. ``stats_retention_days``
    (``REGEN_STATS_RETENTION_DAYS``, 30): provider call counters (``regen stats``) are
    kept this long.
    """

    lease_ttl: float = 30.0
    checkpoint_retention_hours: float = 24.0
    run_retention_days: float = 30.0
    gc_interval: float = 3600.0
    auto_retry: bool = True
    max_crashes: int = 3
    stats_retention_days: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment (``environ``: another mapping), defaults where
        unset or empty; :class:`~regen.foundation.ConfigError` naming the variable for a bad
        value."""
        env = os.environ if environ is None else environ
        return cls(
            lease_ttl=env_float("REGEN_LEASE_TTL_S", 30.0, above=0, environ=env),
            checkpoint_retention_hours=env_float(
                "REGEN_CHECKPOINT_RETENTION_HOURS", 24.0, minimum=0, environ=env
            ),
            run_retention_days=env_float("REGEN_RUN_RETENTION_DAYS", 30.0, minimum=0, environ=env),
            gc_interval=env_float("REGEN_GC_INTERVAL_S", 3600.0, minimum=0, environ=env),
            auto_retry=env_bool("REGEN_AUTO_RETRY", True, environ=env),
            max_crashes=env_int("REGEN_MAX_CRASHES", 3, minimum=1, environ=env),
            stats_retention_days=env_float(
                "REGEN_STATS_RETENTION_DAYS", 30.0, minimum=0, environ=env
            ),
        )
