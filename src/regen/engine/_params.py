"""A flow's declared params: types, defaults, and the check made before a run exists."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from regen.engine._errors import FlowError, ParamsError

_REQUIRED: Any = object()
_TYPES: dict[type, str] = {
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    list: "list",
    dict: "dict",
    object: "any",
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Param:
    """A declared param: ``Param(int, default=3, help="how many")``.

    ``type`` is one of ``str``, ``int``, ``float``, ``bool``, ``list``, ``dict`` or
    ``object`` (any JSON value). Without ``default`` the param is required; with
    ``default=None`` it is optional and ``None`` is a value it accepts.
    """

    type: type = str
    default: Any = _REQUIRED
    help: str = ""

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            names = ", ".join(_TYPES.values())
            raise FlowError(f"Param type {self.type!r} is not supported; use one of: {names}")

    @property
    def required(self) -> bool:
        """Whether a value must be given."""
        return self.default is _REQUIRED

    def describe(self) -> str:
        """``int, default 3`` — for messages and dashboards."""
        kind = _TYPES[self.type]
        return f"{kind}, required" if self.required else f"{kind}, default {self.default!r}"

    def check(self, name: str, value: Any) -> Any:
        """``value`` if it fits (an int is accepted for a float), else :class:`ParamsError`."""
        kind = self.type
        if value is None and self.default is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        ok = kind is object or (
            isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        )
        if not ok:
            raise ParamsError(
                f"param {name!r} must be {_TYPES[kind]}, got {type(value).__name__} {value!r}"
            )
        return value

    def parse(self, name: str, text: str) -> Any:
        """A value from command-line text (``"3"`` → 3, ``"[1,2]"`` → [1, 2])."""
        kind = self.type
        try:
            if kind is str:
                return text
            if kind is bool:
                if text.lower() in _TRUE + _FALSE:
                    return text.lower() in _TRUE
                raise ValueError(text)
            if kind in (int, float):
                return kind(text)
            return self.check(name, json.loads(text))
        except (ValueError, json.JSONDecodeError):
            raise ParamsError(f"param {name!r}: {text!r} is not a valid {_TYPES[kind]}") from None


def declare(params: Mapping[str, type | Param] | None) -> dict[str, Param]:
    """Normalise ``{"topic": str, "count": Param(int, default=3)}``."""
    declared: dict[str, Param] = {}
    for name, spec in (params or {}).items():
        if not name.isidentifier():
            raise FlowError(f"param name {name!r} must be an identifier")
        declared[name] = spec if isinstance(spec, Param) else Param(spec)
    return declared


def check(
    flow: str, declared: Mapping[str, Param], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The run's params: ``given`` checked against ``declared``, defaults filled in."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        takes = "; ".join(f"{n} ({p.describe()})" for n, p in declared.items()) or "no params"
        raise ParamsError(
            f"flow {flow!r}: unknown param{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; it takes: {takes}"
        )
    values: dict[str, Any] = {}
    for name, param in declared.items():
        if name in given:
            values[name] = param.check(name, given[name])
        elif param.required:
            raise ParamsError(f"flow {flow!r}: param {name!r} ({param.describe()}) is missing")
        else:
            values[name] = param.default
    try:
        json.dumps(values)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"flow {flow!r}: params must be JSON values ({exc})") from None
    return values
