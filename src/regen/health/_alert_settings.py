"""Where alerts go and when they fire, read from the environment and ``regen.toml``.

``regen.toml`` may hold an ``[alerts]`` table with the same settings in lower case,
without the prefix::

    [alerts]
    command = "/usr/local/bin/page-oncall"
    webhook = "https://hooks.example.com/regen"
    retry_rate = 0.5        # alert when half the attempts or more are retries...
    window_s = 300          # ...over the last five minutes...
    min_attempts = 20       # ...with at least this many attempts to judge by
    breaker_open = true     # and when a provider's breaker opens
    interval_s = 30         # how often the watcher looks
    timeout_s = 5           # how long the command or webhook may take

A variable set in the environment wins over the file.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from regen.foundation import (
    ConfigError,
    env_bool,
    env_float,
    env_int,
    env_str,
    is_finite,
    is_whole,
    read_toml,
)

_PREFIX = "REGEN_ALERT_"
_KEYS = {
    "command": str,
    "webhook": str,
    "retry_rate": float,
    "window_s": float,
    "min_attempts": int,
    "breaker_open": bool,
    "interval_s": float,
    "timeout_s": float,
}


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """``command``: run for each alert, the alert as JSON on its stdin and in
    ``REGEN_ALERT_*`` variables; ``webhook``: a URL each alert is POSTed to as JSON.
    An alert fires when a provider's retries per attempt reach ``retry_rate`` over the
    last ``window_s`` seconds (with ``min_attempts`` attempts or more), and when its
    breaker opens (``breaker_open``); once per crossing, with a notice when it is back.
    The watcher looks every ``interval_s`` seconds; a command or webhook gets
    ``timeout_s`` seconds."""

    command: str | None = None
    webhook: str | None = None
    retry_rate: float = 0.5
    window_s: float = 300.0
    min_attempts: int = 20
    breaker_open: bool = True
    interval_s: float = 30.0
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not is_finite(self.retry_rate) or not 0 < self.retry_rate <= 1:
            raise _BadSetting(
                "retry_rate",
                self.retry_rate,
                "expected a fraction of attempts above 0 and at most 1 (0.5: half the "
                "attempts are retries)",
            )
        for name in ("window_s", "interval_s", "timeout_s"):
            value = getattr(self, name)
            if not is_finite(value) or value <= 0:
                raise _BadSetting(name, value, "expected a number of seconds > 0")
        if not is_whole(self.min_attempts) or self.min_attempts < 1:
            raise _BadSetting("min_attempts", self.min_attempts, "expected a whole number >= 1")
        if self.command is not None:
            self._check_command(self.command)
        if self.webhook is not None:
            parts = urlsplit(self.webhook)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                # Not the URL itself: its path may hold a token.
                shown = f"{parts.scheme or 'no scheme'}://{parts.hostname or ''}…"
                raise _BadSetting("webhook", shown, "expected an http:// or https:// URL")

    @staticmethod
    def _check_command(command: str) -> None:
        """Refuse now a command that could not be run when an alert comes."""
        try:
            words = shlex.split(command)
        except ValueError as exc:  # an unclosed quote
            raise _BadSetting("command", command, f"cannot be split like a shell: {exc}") from None
        if not words:
            raise _BadSetting("command", command, "is empty: name a program to run, or unset it")

    @property
    def enabled(self) -> bool:
        """Whether alerts go anywhere (a command or a webhook is set)."""
        return self.command is not None or self.webhook is not None

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Self:
        """The ``[alerts]`` table of ``path`` (else ``$REGEN_PROVIDERS_FILE``, else
        ``./regen.toml`` when it exists), overridden by ``REGEN_ALERT_*`` variables."""
        env = os.environ if environ is None else environ
        chosen = path or env_str("REGEN_PROVIDERS_FILE", environ=env)
        table = _table(Path(chosen)) if chosen else {}
        if not chosen and Path("regen.toml").is_file():
            table = _table(Path("regen.toml"))
        values: dict[str, Any] = {**table}
        where = {key: f"{chosen or 'regen.toml'}: [alerts] {key}" for key in table}
        for key, kind in _KEYS.items():
            name = _PREFIX + key.upper()
            if not env.get(name, "").strip():
                continue
            where[key] = name
            if kind is str:
                values[key] = env_str(name, environ=env)
            elif kind is bool:
                values[key] = env_bool(name, True, environ=env)
            elif kind is int:
                values[key] = env_int(name, 1, minimum=1, environ=env)
            else:
                values[key] = env_float(name, 1.0, above=0, environ=env)
        try:
            return cls(**values)
        except _BadSetting as exc:  # named as the user set it: a variable, or the file's key
            raise ConfigError(f"{where[exc.key]}={exc.value!r}: {exc.reason}") from None


class _BadSetting(ConfigError):
    """A setting refused, by its key (``retry_rate``), whatever set it."""

    def __init__(self, key: str, value: Any, reason: str) -> None:
        super().__init__(f"alert setting {key}={value!r}: {reason}")
        self.key, self.value, self.reason = key, value, reason


def _table(path: Path) -> dict[str, Any]:
    """The checked ``[alerts]`` table of a TOML file (empty when it has none)."""
    document = read_toml(path, "settings file")
    table = document.get("alerts", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: 'alerts' must be a table ([alerts])")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {unknown} in [alerts]; expected {', '.join(_KEYS)}"
        )
    checked: dict[str, Any] = {}
    for key, value in table.items():
        kind = _KEYS[key]
        if not _fits(value, kind):
            raise ConfigError(f"{path}: [alerts] {key} = {value!r}: expected {_KIND_NAMES[kind]}")
        checked[key] = float(value) if kind is float else value
    return checked


def _fits(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


_KIND_NAMES = {str: "a string", float: "a number", int: "a whole number", bool: "true or false"}
