"""The simulator's configuration, and the parsers the command line shares with it."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from regen.sim._faults import APPLIES, FAULTS, parse_seconds

DEFAULT_MODELS: tuple[str, ...] = (
    "sim",
    "sim-image",
    "sim-video",
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "deepseek-chat",
    "deepseek-reasoner",
    "qwen-plus",
    "qwen-turbo",
    "qwen-max",
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "wanx-v1",
    "wanx2.1-t2i-turbo",
    "wan2.2-t2i-flash",
    "wan2.2-t2i-plus",
    "jimeng-4.0",
)


@dataclass(frozen=True)
class SimConfig:
    """How a simulator behaves. Durations are in seconds.

    ``faults`` is the seeded random profile (fault name → probability per request; the
    probabilities of the faults that apply to one route must add up to at most 1).
    ``script`` is a TOML or JSON file of script rules and ``rules`` the same rules given
    directly (see ``docs/simulator.md``). ``keys`` empty accepts any non-empty key.
    ``rpm`` enforces a requests-per-minute limit (429 past it); ``None`` only reports a
    nominal limit of 10,000 in the ``x-ratelimit-*`` headers. ``rps`` enforces a
    requests-per-second token bucket holding ``burst`` requests (default ``ceil(rps)``),
    answered 429 with ``Retry-After``. ``outage_after`` starts an outage at that API request
    (1 for the first): every request is answered 503 for ``outage_for`` seconds.
    """

    host: str = "127.0.0.1"
    port: int = 8900
    faults: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    script: str | os.PathLike[str] | None = None
    rules: Sequence[Mapping[str, Any]] = ()
    latency: float = 0.0
    jitter: float = 0.0
    keys: tuple[str, ...] = ()
    task_seconds: float = 0.5
    slow_seconds: float = 2.0
    chunk_delay: float = 0.0
    url_ttl: float = 86400.0
    rpm: int | None = None
    rps: float | None = None
    burst: int | None = None
    outage_after: int | None = None
    outage_for: float = 0.0
    models: tuple[str, ...] = DEFAULT_MODELS

    def __post_init__(self) -> None:
        for name in ("latency", "jitter", "task_seconds", "slow_seconds", "chunk_delay", "url_ttl"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"SimConfig.{name} must be a non-negative number of seconds")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"SimConfig.port must be 0..65535, got {self.port}")
        if self.rpm is not None and self.rpm < 1:
            raise ValueError("SimConfig.rpm must be at least 1 (or None for no limit)")
        if self.rps is not None and (not math.isfinite(self.rps) or self.rps <= 0):
            raise ValueError("SimConfig.rps must be a positive number (or None for no limit)")
        if self.burst is not None and self.burst < 1:
            raise ValueError("SimConfig.burst must be at least 1")
        if self.burst is not None and self.rps is None:
            raise ValueError(
                "SimConfig.burst needs rps (--rps): it is the burst of a per-second limit"
            )
        if self.outage_after is not None and self.outage_after < 1:
            raise ValueError("SimConfig.outage_after must be a request number of at least 1")
        if not math.isfinite(self.outage_for) or self.outage_for < 0:
            raise ValueError("SimConfig.outage_for must be a non-negative number of seconds")
        if self.outage_after is not None and self.outage_for <= 0:
            raise ValueError(
                "SimConfig.outage_after needs outage_for (--outage-for): how long the outage lasts"
            )
        _check_profile(self.faults)


def _check_profile(profile: Mapping[str, float]) -> None:
    totals: dict[str, float] = {}
    for name, probability in profile.items():
        if name not in APPLIES:
            raise ValueError(
                f"unknown fault {name!r} in profile; known faults: {', '.join(FAULTS)}"
            )
        if not 0 <= probability <= 1:
            raise ValueError(f"probability of {name!r} must be between 0 and 1, got {probability}")
        for route in APPLIES[name]:
            totals[route] = totals.get(route, 0.0) + probability
    worst = max(totals.items(), key=lambda item: item[1], default=("", 0.0))
    if worst[1] > 1 + 1e-9:
        raise ValueError(
            f"fault probabilities for route {worst[0]!r} add up to {worst[1]:g}; "
            "at most one profile fault is drawn per request, so they must add up to 1 or less"
        )


def parse_profile(text: str) -> dict[str, float]:
    """Read ``hang=0.05,rate_limit=0.1`` into a profile mapping."""
    profile: dict[str, float] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"profile entry {part!r} must read name=probability, e.g. hang=0.05")
        if name not in APPLIES:
            raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(FAULTS)}")
        try:
            profile[name] = float(value)
        except ValueError:
            raise ValueError(f"probability of {name!r} is not a number: {value!r}") from None
    _check_profile(profile)
    return profile


def parse_duration(text: str) -> float:
    """Read ``50ms``, ``1.5s`` or a bare number of seconds."""
    return parse_seconds(text)


def parse_keys(text: str) -> tuple[str, ...]:
    """Read ``k1,k2`` into a tuple of accepted keys."""
    return tuple(key.strip() for key in text.split(",") if key.strip())
