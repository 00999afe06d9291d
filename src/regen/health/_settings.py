"""How often and how long the health checks run, read from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from regen.foundation import ConfigError, env_seconds, is_finite

#: A check every minute, each given five seconds: the paper pipeline's choice.
DEFAULT_INTERVAL = 60.0
DEFAULT_TIMEOUT = 5.0

# Each setting's variables, the first one set winning: regen's own, then the paper pipeline's.
_INTERVAL_VARS = ("REGEN_HEALTH_INTERVAL_S", "MODEL_HEALTH_CHECK_INTERVAL")
_TIMEOUT_VARS = ("REGEN_HEALTH_TIMEOUT_S", "MODEL_HEALTH_CHECK_TIMEOUT")


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """``interval``: seconds between two checks of a provider; ``timeout``: seconds one
    check may take before it counts as ``timeout``."""

    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("interval", "timeout"):
            value = getattr(self, name)
            if not is_finite(value) or value <= 0:
                raise ConfigError(
                    f"health check {name}={value!r}: expected a number of seconds > 0"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """``REGEN_HEALTH_INTERVAL_S`` / ``REGEN_HEALTH_TIMEOUT_S``, else the paper pipeline's
        ``MODEL_HEALTH_CHECK_INTERVAL`` / ``MODEL_HEALTH_CHECK_TIMEOUT``, else 60 s and 5 s."""
        return cls(
            interval=_first(_INTERVAL_VARS, DEFAULT_INTERVAL, environ),
            timeout=_first(_TIMEOUT_VARS, DEFAULT_TIMEOUT, environ),
        )


def _first(names: tuple[str, ...], default: float, environ: Mapping[str, str] | None) -> float:
    for name in names:
        value = env_seconds(name, positive=True, environ=environ)
        if value is not None:
            return value
    return default
