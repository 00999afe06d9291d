"""A flow's declared params: types, constraints, defaults, and the check made before a run
exists.

Params are stored with the run as JSON: a ``date`` as ISO text (``"2026-01-02"``), handed
back to steps as a :class:`datetime.date`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from types import MappingProxyType
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
    datetime.date: "date",
}
#: Types whose values can be ordered (``ge``/``le``) or listed (``choices``).
_SCALARS = (str, int, float, datetime.date)
_ORDERED = (int, float, datetime.date)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Param:
    """A declared param: ``Param(int, default=3, ge=1, le=10, help="how many")``.

    ``type`` is one of ``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``,
    ``datetime.date`` (ISO text on the command line: ``2026-01-02``) or ``object`` (any
    JSON value). Without ``default`` the param is required; with ``default=None`` it is
    optional and ``None`` is a value it accepts.

    Constraints, checked before a run is created: ``ge``/``le`` bound an ``int``,
    ``float`` or ``date`` (inclusive); ``choices`` lists the values allowed;
    ``validator(value)`` refuses a value by returning ``False`` or raising
    :class:`ValueError` (whose message is shown).
    """

    type: type = str
    default: Any = _REQUIRED
    help: str = ""
    _: KW_ONLY
    ge: Any = None
    le: Any = None
    choices: Iterable[Any] | None = None
    validator: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        kind = self.type
        if kind not in _TYPES:
            names = ", ".join(_TYPES.values())
            raise FlowError(f"Param type {kind!r} is not supported; use one of: {names}")
        what = f"Param({_TYPES[kind]})"
        for bound in ("ge", "le"):
            value = getattr(self, bound)
            if value is None:
                continue
            if kind not in _ORDERED:
                raise FlowError(f"{what}: {bound}= bounds int, float and date params only")
            if not _fits(kind, value) or (kind is not datetime.date and not math.isfinite(value)):
                raise FlowError(
                    f"{what}: {bound}={value!r} must be a finite {_TYPES[kind]} like the param"
                )
        if self.ge is not None and self.le is not None and self.ge > self.le:
            raise FlowError(f"{what}: ge={self.ge!r} is above le={self.le!r}; no value fits")
        if self.choices is not None:
            object.__setattr__(self, "choices", _choices(what, kind, self.choices))
        if self.validator is not None and not callable(self.validator):
            raise FlowError(f"{what}: validator={self.validator!r} must be a function of the value")
        if not self.required and self.default is not None:
            try:
                self.check("default", self.default)
            except ParamsError as exc:
                raise FlowError(f"{what}: the default does not fit: {exc}") from None

    @property
    def required(self) -> bool:
        """Whether a value must be given."""
        return self.default is _REQUIRED

    def describe(self) -> str:
        """``int, default 3, ≥ 1`` — for messages and dashboards."""
        parts = [_TYPES[self.type]]
        if self.required:
            parts.append("required")
        else:
            parts.append(f"default {_show(self.default)}")
        if self.ge is not None:
            parts.append(f"≥ {_show(self.ge)}")
        if self.le is not None:
            parts.append(f"≤ {_show(self.le)}")
        if self.choices is not None:
            parts.append("one of " + ", ".join(_show(c) for c in self.choices))
        return ", ".join(parts)

    def check(self, name: str, value: Any) -> Any:
        """``value`` as the run stores it (JSON; a date as ISO text) if it fits the type and
        the constraints, else :class:`ParamsError` saying what is expected."""
        if value is None and self.default is None:
            return None
        typed = self._typed(name, value)
        if not isinstance(typed, datetime.date):
            _json_value(name, typed)
        self._constrain(name, typed)
        return typed.isoformat() if isinstance(typed, datetime.date) else typed

    def restore(self, stored: Any) -> Any:
        """The value a step sees for what :meth:`check` stored (ISO text → ``date``; a
        value stored before the param was a date is handed over as it is)."""
        if self.type is datetime.date and isinstance(stored, str):
            with contextlib.suppress(ValueError):
                return datetime.date.fromisoformat(stored)
        return stored

    def parse(self, name: str, text: str) -> Any:
        """A value from command-line text (``"3"`` → 3, ``"[1,2]"`` → [1, 2],
        ``"2026-01-02"`` → a date)."""
        kind = self.type
        try:
            if kind is str:
                return text
            if kind is bool:
                if text.lower() in _TRUE + _FALSE:
                    return text.lower() in _TRUE
                raise ValueError(text)
            if kind is datetime.date:
                return datetime.date.fromisoformat(text)
            if kind in (int, float):
                return kind(text)
            return json.loads(text)
        except (ValueError, json.JSONDecodeError):
            raise ParamsError(
                f"param {name!r}: {text!r} is not a valid {_expected(kind)}"
            ) from None

    def _typed(self, name: str, value: Any) -> Any:
        """``value`` as this param's Python type (an int is accepted for a float, ISO text
        for a date), else :class:`ParamsError`."""
        kind = self.type
        if kind is datetime.date and isinstance(value, str):
            try:
                return datetime.date.fromisoformat(value)
            except ValueError:
                raise ParamsError(
                    f"param {name!r} must be a {_expected(kind)}, got {value!r}"
                ) from None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not _fits(kind, value):
            raise ParamsError(
                f"param {name!r} must be {_expected(kind)}, got {type(value).__name__} {value!r}"
            )
        if kind is float and not math.isfinite(value):
            raise ParamsError(f"param {name!r} must be a finite number, got {value!r}")
        return value

    def _constrain(self, name: str, value: Any) -> None:
        if self.ge is not None and value < self.ge:
            raise ParamsError(f"param {name!r} must be ≥ {_show(self.ge)}, got {_show(value)}")
        if self.le is not None and value > self.le:
            raise ParamsError(f"param {name!r} must be ≤ {_show(self.le)}, got {_show(value)}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(_show(c) for c in self.choices)
            raise ParamsError(f"param {name!r} must be one of {allowed}, got {_show(value)}")
        if self.validator is not None:
            try:
                accepted = self.validator(value)
            except ValueError as exc:
                raise ParamsError(f"param {name!r}: {_show(value)} is refused: {exc}") from None
            if accepted is False:
                raise ParamsError(
                    f"param {name!r}: {_show(value)} is refused by its validator "
                    f"{getattr(self.validator, '__name__', self.validator)!r}"
                )


def _fits(kind: type, value: Any) -> bool:
    """Whether ``value`` is of the param type ``kind`` (no bool for int, no datetime for date)."""
    if kind is object:
        return True
    if isinstance(value, bool) and kind is not bool:
        return False
    if kind is datetime.date:
        return isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _choices(what: str, kind: type, choices: Iterable[Any]) -> tuple[Any, ...]:
    if kind not in _SCALARS or isinstance(choices, str | bytes) or not _iterable(choices):
        raise FlowError(
            f"{what}: choices={choices!r} must be a list of str, int, float or date values "
            "for a param of that type"
        )
    listed = tuple(choices)
    wrong = [c for c in listed if not _fits(kind, c)]
    if not listed or wrong:
        raise FlowError(
            f"{what}: choices={choices!r} must be a non-empty list of {_TYPES[kind]} values"
            + (f" (not {_TYPES[kind]}: {', '.join(map(repr, wrong))})" if wrong else "")
        )
    return listed


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _expected(kind: type) -> str:
    return "date (YYYY-MM-DD)" if kind is datetime.date else _TYPES[kind]


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime.date) else repr(value)


def _json_value(name: str, value: Any) -> None:
    """:class:`ParamsError` unless ``value`` can be stored as strict JSON in UTF-8."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ParamsError(
            f"param {name!r} is not valid UTF-8 text ({value!r}); pass text, or encode "
            "binary data (base64)"
        ) from None
    except ValueError:
        raise ParamsError(
            f"param {name!r} holds nan or infinity, which JSON cannot keep ({value!r})"
        ) from None
    except TypeError as exc:
        raise ParamsError(f"param {name!r} must be a JSON value ({exc})") from None


def declare(params: Mapping[str, type | Param] | None) -> dict[str, Param]:
    """Normalise ``{"topic": str, "count": Param(int, default=3)}``."""
    declared: dict[str, Param] = {}
    for name, spec in (params or {}).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise FlowError(f"param name {name!r} must be an identifier")
        declared[name] = spec if isinstance(spec, Param) else Param(spec)
    return declared


def check(flow: str, declared: Mapping[str, Param], given: Any) -> dict[str, Any]:
    """The run's params as stored (JSON): ``given`` checked against ``declared``, defaults
    filled in."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ParamsError(
            f"flow {flow!r}: params must be a mapping of name to value (a dict), "
            f"not {type(given).__name__} {given!r}"
        )
    not_names = [n for n in given if not isinstance(n, str)]
    if not_names:
        raise ParamsError(
            f"flow {flow!r}: param names must be text, not {', '.join(map(repr, not_names))}"
        )
    unknown = sorted(set(given) - set(declared))
    if unknown:
        takes = "; ".join(f"{n} ({p.describe()})" for n, p in declared.items()) or "no params"
        raise ParamsError(
            f"flow {flow!r}: unknown param{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; it takes: {takes}"
        )
    values: dict[str, Any] = {}
    for name, param in declared.items():
        if name not in given and param.required:
            raise ParamsError(f"flow {flow!r}: param {name!r} ({param.describe()}) is missing")
        try:
            values[name] = param.check(name, given.get(name, param.default))
        except ParamsError as exc:
            raise ParamsError(f"flow {flow!r}: {exc}") from None
    return values


def restore(declared: Mapping[str, Param], stored: Mapping[str, Any]) -> Mapping[str, Any]:
    """The params steps see (read-only) for a run's stored params: dates as ``date``."""
    typed = {
        name: param.restore(stored[name])
        for name, param in declared.items()
        if param.type is datetime.date and name in stored
    }
    return MappingProxyType({**stored, **typed})
