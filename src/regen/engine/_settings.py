"""The engine's settings, read from ``REGEN_*`` environment variables."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from regen.retry import ConfigError


def _number(env: Mapping[str, str], name: str, default: float, *, positive: bool = True) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r}: expected a finite number")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{name}={raw!r}: expected a number {'>' if positive else '≥'} 0")
    return value


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r}: expected a whole number ≥ 1")
    return int(raw)


@dataclass(frozen=True, slots=True)
class Settings:
    """Lease length, clean-up windows and automatic retries.

    ``lease_ttl`` (``REGEN_LEASE_TTL_S``, 30 s): a run whose process stops heartbeating
    for this long may be taken over. ``checkpoint_retention_hours``
    (``REGEN_CHECKPOINT_RETENTION_HOURS``, 24): failed/partial/cancelled runs keep their
    checkpoints this long (then they are no longer resumable). ``run_retention_days``
    (``REGEN_RUN_RETENTION_DAYS``, 30): finished runs, their events and artifacts no run
    uses are kept this long. ``gc_interval`` (``REGEN_GC_INTERVAL_S``, 3600): how often a
    worker cleans up. ``auto_retry`` (``REGEN_AUTO_RETRY``, on): set to 0 to switch off
    every flow's automatic retries. ``max_crashes`` (``REGEN_MAX_CRASHES``, 3): a run
    whose process was lost this many times (its lease expired mid-run) fails with kind
    ``crashed`` instead of being taken over again.
    """

    lease_ttl: float = 30.0
    checkpoint_retention_hours: float = 24.0
    run_retention_days: float = 30.0
    gc_interval: float = 3600.0
    auto_retry: bool = True
    max_crashes: int = 3

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment (``environ``: another mapping), defaults where
        unset or empty; :class:`~regen.retry.ConfigError` naming the variable for a bad
        value."""
        env = os.environ if environ is None else environ
        raw = env.get("REGEN_AUTO_RETRY", "")
        auto = raw.strip().lower() or "1"
        if auto not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(
                f"REGEN_AUTO_RETRY={raw!r}: expected 1/0, true/false, yes/no or on/off"
            )
        return cls(
            lease_ttl=_number(env, "REGEN_LEASE_TTL_S", 30.0),
            checkpoint_retention_hours=_number(
                env, "REGEN_CHECKPOINT_RETENTION_HOURS", 24.0, positive=False
            ),
            run_retention_days=_number(env, "REGEN_RUN_RETENTION_DAYS", 30.0, positive=False),
            gc_interval=_number(env, "REGEN_GC_INTERVAL_S", 3600.0),
            auto_retry=auto in ("1", "true", "yes", "on"),
            max_crashes=_whole(env, "REGEN_MAX_CRASHES", 3),
        )
