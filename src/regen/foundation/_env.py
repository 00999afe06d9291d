"""Typed readers of environment variables: one place that parses them and says what is wrong.

Every reader takes the variable's ``name`` and a ``default`` used when it is unset or blank
(surrounding spaces are ignored), and an optional ``environ`` mapping read instead of
``os.environ``. A bad value raises :class:`ConfigError` as ``NAME='value': expected …``.
``what`` describes the expected value in that message (``"a number of seconds > 0"``);
without it, the message says which check failed (``a number``, ``a finite number``,
``a number ≥ 0``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import overload

from regen.foundation._errors import ConfigError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _raw(name: str, environ: Mapping[str, str] | None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        return None
    return value.strip() or None


def _refuse(name: str, raw: str, what: str) -> ConfigError:
    return ConfigError(f"{name}={raw!r}: expected {what}")


@overload
def env_str(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str: ...
@overload
def env_str(
    name: str, default: None = None, *, environ: Mapping[str, str] | None = None
) -> str | None: ...
def env_str(
    name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None
) -> str | None:
    """The variable's text without surrounding spaces, or ``default``."""
    raw = _raw(name, environ)
    return default if raw is None else raw


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    """``1/0``, ``true/false``, ``yes/no`` or ``on/off`` (any case), or ``default``."""
    raw = _raw(name, environ)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise _refuse(name, raw, "1/0, true/false, yes/no or on/off")


@overload
def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    what: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> int: ...
@overload
def env_int(
    name: str,
    default: None = None,
    *,
    minimum: int | None = None,
    what: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> int | None: ...
def env_int(
    name: str,
    default: int | None = None,
    *,
    minimum: int | None = None,
    what: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> int | None:
    """A whole number, at least ``minimum`` when given, or ``default``."""
    raw = _raw(name, environ)
    if raw is None:
        return default
    bound = "" if minimum is None else f" ≥ {minimum}"
    try:
        value = int(raw)
    except ValueError:
        raise _refuse(name, raw, what or f"a whole number{bound}") from None
    if minimum is not None and value < minimum:
        raise _refuse(name, raw, what or f"a whole number{bound}")
    return value


@overload
def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    what: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> float: ...
@overload
def env_float(
    name: str,
    default: None = None,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    what: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> float | None: ...
def env_float(
    name: str,
    default: float | None = None,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    what: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> float | None:
    """A finite number, ``≥ minimum``, ``> above`` and ``≤ maximum`` when given, or
    ``default``."""
    raw = _raw(name, environ)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _refuse(name, raw, what or "a number") from None
    if not math.isfinite(value):
        raise _refuse(name, raw, what or "a finite number")
    if minimum is not None and value < minimum:
        raise _refuse(name, raw, what or f"a number ≥ {minimum:g}")
    if above is not None and value <= above:
        raise _refuse(name, raw, what or f"a number > {above:g}")
    if maximum is not None and value > maximum:
        raise _refuse(name, raw, what or f"a number ≤ {maximum:g}")
    return value


@overload
def env_seconds(
    name: str,
    default: float,
    *,
    positive: bool = False,
    environ: Mapping[str, str] | None = None,
) -> float: ...
@overload
def env_seconds(
    name: str,
    default: None = None,
    *,
    positive: bool = False,
    environ: Mapping[str, str] | None = None,
) -> float | None: ...
def env_seconds(
    name: str,
    default: float | None = None,
    *,
    positive: bool = False,
    environ: Mapping[str, str] | None = None,
) -> float | None:
    """A duration in seconds: ``> 0`` when ``positive``, else ``≥ 0``; or ``default``."""
    if positive:
        return env_float(name, default, above=0, what="a number of seconds > 0", environ=environ)
    return env_float(name, default, minimum=0, what="a number of seconds ≥ 0", environ=environ)
