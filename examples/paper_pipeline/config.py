"""The pipeline's configuration, read from the seed's own variable names.

Seed 003's ``openai_config.env`` block, with the defaults the seed sets::

    CHECKPOINT_RETENTION_HOURS=24   # checkpoints kept this long, then no longer resumable
    AUTO_RETRY_ENABLED=true         # a failed run retries itself from its failed step …
    AUTO_RETRY_MAX_ATTEMPTS=3       # … at most this many times …
    AUTO_RETRY_DELAY_SECONDS=30     # … this long after each failure

and the app's own: ``PAPER_PIPELINE_FEED`` (a JSON feed file instead of the built-in
list), ``PAPER_PIPELINE_FAIL_STEP`` (inject a failure: ``render_images`` fails the step
before its work, ``publish_mcp:after`` after it, as if the acknowledgement were lost).
Data lives under ``REGEN_HOME`` (default ``./.regen``), as for every regen app.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from regen import ConfigError
from regen.engine import MAX_AUTO_RETRIES, MAX_RETRY_DELAY_S, Settings

#: The five steps, in order (seed 003's pipeline).
STEPS = ("fetch_papers", "openai_analyze", "render_images", "build_payload", "publish_mcp")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false (also 1/0, yes/no, on/off)")


def _whole(env: Mapping[str, str], name: str, default: int, most: int) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= most:
        raise ConfigError(
            f"{name}={raw!r}: expected a whole number from 0 to {most:,} "
            f"(0 switches automatic retries off; the default is {default})"
        )
    return value


def _seconds(
    env: Mapping[str, str], name: str, default: float, unit: str, most: float = math.inf
) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= most:
        upper = f" and ≤ {most:,.0f}" if math.isfinite(most) else ""
        raise ConfigError(
            f"{name}={raw!r}: expected a number of {unit} ≥ 0{upper} (the default is {default:g})"
        )
    return value


def _fail_step(env: Mapping[str, str]) -> tuple[str, str] | None:
    raw = _raw(env, "PAPER_PIPELINE_FAIL_STEP")
    if raw is None:
        return None
    step, _, when = raw.partition(":")
    when = when or "before"
    if step not in STEPS or when not in ("before", "after"):
        raise ConfigError(
            f"PAPER_PIPELINE_FAIL_STEP={raw!r}: expected STEP or STEP:after, "
            f"STEP one of {', '.join(STEPS)}"
        )
    return step, when


@dataclass(frozen=True, slots=True)
class Config:
    """What the seed lets a user configure, plus where the app keeps its data."""

    auto_retry_enabled: bool = True
    auto_retry_max_attempts: int = 3
    auto_retry_delay_seconds: float = 30.0
    checkpoint_retention_hours: float = 24.0
    home: Path = Path(".regen")
    feed: Path | None = None
    fail_step: tuple[str, str] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """The configuration from the environment; a :class:`regen.ConfigError` naming the
        variable and what it expects when a value is wrong."""
        env = os.environ if environ is None else environ
        feed = _raw(env, "PAPER_PIPELINE_FEED")
        return cls(
            auto_retry_enabled=_flag(env, "AUTO_RETRY_ENABLED", True),
            auto_retry_max_attempts=_whole(env, "AUTO_RETRY_MAX_ATTEMPTS", 3, MAX_AUTO_RETRIES),
            auto_retry_delay_seconds=_seconds(
                env, "AUTO_RETRY_DELAY_SECONDS", 30.0, "seconds", MAX_RETRY_DELAY_S
            ),
            checkpoint_retention_hours=_seconds(env, "CHECKPOINT_RETENTION_HOURS", 24.0, "hours"),
            home=Path(_raw(env, "REGEN_HOME") or ".regen").expanduser(),
            feed=Path(feed).expanduser() if feed else None,
            fail_step=_fail_step(env),
        )

    @property
    def max_retries(self) -> int:
        """The automatic retries a new run gets (0 when they are switched off)."""
        return self.auto_retry_max_attempts if self.auto_retry_enabled else 0

    def settings(self, environ: Mapping[str, str] | None = None) -> Settings:
        """regen's engine settings (``REGEN_*``) with the seed's retention and switch applied."""
        return replace(
            Settings.from_env(environ),
            checkpoint_retention_hours=self.checkpoint_retention_hours,
            auto_retry=self.auto_retry_enabled,
        )
