"""Reading breaker, rate-limit and fallback settings from a providers file and the
environment, with errors that name the setting to fix.

In a file, per provider::

    [providers.dashscope]
    fallback = ["openai"]            # providers offering the same capability, in order
    fallback_on = ["timeout", "server_error"]   # default: the outage kinds
    capabilities = ["image"]         # default: what the kind offers

    [providers.dashscope.breaker]    # BreakerSettings
    failures = 5
    open_s = 30

    [providers.dashscope.limit]      # LimitSettings
    rps = 20
    burst = 20

In the environment, ``{PREFIX}_BREAKER_{SETTING}``, ``{PREFIX}_LIMIT_{SETTING}``,
``{PREFIX}_FALLBACK`` and ``{PREFIX}_FALLBACK_ON`` (comma-separated), where ``PREFIX`` is
the well-known provider's (``DASHSCOPE_BREAKER_FAILURES``) or, for a provider of a file,
its name in capitals (``SIM_LIMIT_RPS`` for ``[providers.sim]``). The environment wins over
the file.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import fields, replace
from typing import Any, TypeVar

from regen.foundation import ConfigError, env_bool, env_float, env_int, env_str
from regen.providers._breaker import OUTAGE_KINDS, BreakerSettings
from regen.providers._limiter import LimitSettings
from regen.providers._tasks import Polling
from regen.retry import Kind

S = TypeVar("S", BreakerSettings, LimitSettings, Polling)

#: What each kind of adapter offers by default.
CAPABILITIES: dict[str, frozenset[str]] = {
    "openai": frozenset({"chat", "image"}),
    "dashscope": frozenset({"image"}),
}
KNOWN_CAPABILITIES = frozenset({"chat", "image"})


def env_prefix(name: str) -> str:
    """The variable prefix of a provider declared in a file: its name in capitals."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def checked_section(
    name: str, source: str, section: str, table: Any, known: Collection[str]
) -> Mapping[str, Any]:
    """``[providers.NAME.SECTION]``, refused unless it is a table of ``known`` keys."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"provider {name!r} ({source}): [{section}] must be a table")
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(
            f"provider {name!r} ({source}): unknown {section} setting(s) {sorted(unknown)}; "
            f"expected: {', '.join(sorted(known))}"
        )
    return table


def settings_from_table(name: str, source: str, section: str, table: Any, cls: type[S]) -> S:
    """``[providers.NAME.SECTION]`` as the dataclass ``cls``: unknown keys and bad values
    refused with an error naming the provider, its file and the section."""
    checked = checked_section(name, source, section, table, {f.name for f in fields(cls)})
    try:
        return cls(**checked)
    except ConfigError as exc:  # it names the section and the setting
        raise ConfigError(f"provider {name!r} ({source}): {exc}") from None


def breaker_from_table(name: str, source: str, table: Any) -> BreakerSettings:
    """``[providers.NAME.breaker]`` as :class:`BreakerSettings`."""
    return settings_from_table(name, source, "breaker", table, BreakerSettings)


def limit_from_table(name: str, source: str, table: Any) -> LimitSettings:
    """``[providers.NAME.limit]`` as :class:`LimitSettings`."""
    return settings_from_table(name, source, "limit", table, LimitSettings)


_BREAKER_ENV: dict[str, str] = {
    "failures": "int",
    "window_s": "float",
    "failure_rate": "float",
    "min_calls": "int",
    "open_s": "float",
    "probes": "int",
    "rate_limits": "int",
    "rate_limit_cooldown_s": "float",
    "enabled": "bool",
}
_LIMIT_ENV: dict[str, str] = {
    "rps": "float",
    "burst": "int",
    "tpm": "int",
    "concurrency": "int",
    "adaptive": "bool",
}


def _read(variable: str, kind: str, environ: Mapping[str, str], default: Any) -> Any:
    if kind == "bool":
        if env_str(variable, environ=environ) is None:
            return default
        return env_bool(variable, bool(default), environ=environ)
    if kind == "int":
        whole = env_int(variable, minimum=0, what="a whole number ≥ 0", environ=environ)
        return default if whole is None else whole
    number = env_float(variable, minimum=0, what="a number ≥ 0", environ=environ)
    return default if number is None else number


def _from_env(settings: S, prefix: str, section: str, environ: Mapping[str, str]) -> S:
    table = _BREAKER_ENV if isinstance(settings, BreakerSettings) else _LIMIT_ENV
    changes: dict[str, Any] = {}
    for key, kind in table.items():
        variable = f"{prefix}_{section}_{key.upper()}"
        current = getattr(settings, key)
        value = _read(variable, kind, environ, current)
        if value is not current:
            changes[key] = value
    if not changes:
        return settings
    try:
        return replace(settings, **changes)
    except ConfigError as exc:
        names = ", ".join(f"{prefix}_{section}_{key.upper()}" for key in sorted(changes))
        raise ConfigError(f"{names}: {exc}") from None


def breaker_from_env(
    settings: BreakerSettings, prefix: str, environ: Mapping[str, str]
) -> BreakerSettings:
    """``settings`` with ``{PREFIX}_BREAKER_*`` variables applied."""
    return _from_env(settings, prefix, "BREAKER", environ)


def limit_from_env(
    settings: LimitSettings, prefix: str, environ: Mapping[str, str]
) -> LimitSettings:
    """``settings`` with ``{PREFIX}_LIMIT_*`` variables applied."""
    return _from_env(settings, prefix, "LIMIT", environ)


def names_list(value: Any, what: str) -> tuple[str, ...]:
    """A list of names from a file (a list of strings) or a variable (comma-separated)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ConfigError(f"{what}={value!r}: expected a list of names")


def kinds_list(value: Any, what: str) -> frozenset[Kind]:
    """``fallback_on``: failure kinds, by name."""
    kinds: set[Kind] = set()
    for name in names_list(value, what):
        try:
            kinds.add(Kind(name))
        except ValueError:
            raise ConfigError(
                f"{what}: unknown failure kind {name!r}; expected some of: "
                f"{', '.join(k.value for k in Kind)}"
            ) from None
    return frozenset(kinds)


def capabilities_list(value: Any, what: str, kind: str) -> frozenset[str]:
    """``capabilities``: what the provider offers, within what its kind can do."""
    chosen = frozenset(names_list(value, what))
    offered = CAPABILITIES.get(kind, frozenset())
    beyond = chosen - offered
    if beyond:
        raise ConfigError(
            f"{what}: a provider of kind {kind!r} offers {', '.join(sorted(offered))}, "
            f"not {', '.join(sorted(beyond))}"
        )
    if not chosen:
        raise ConfigError(f"{what}: name at least one of {', '.join(sorted(offered))}")
    return chosen


DEFAULT_FALLBACK_ON = OUTAGE_KINDS
