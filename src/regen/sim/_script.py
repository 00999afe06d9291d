"""Scripts: "for requests matching X, apply these faults in turn, then succeed".

A script is a list of rules. The first *active* rule matching a request decides its
faults: it consumes the next of its ``steps`` (each a fault-spec list, ``"ok"`` for none);
once its steps are used up it answers ``then`` forever if given, and is otherwise spent.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regen.sim._faults import ROUTES, FaultSpec, parse_faults

_MATCHERS = ("prompt", "prompt_contains", "task_id", "out_trade_no", "model")
_KEYS = frozenset((*_MATCHERS, "route", "steps", "then"))


@dataclass(slots=True)
class Ident:
    """What identifies a request to scripts, stats and the random profile.

    ``prompt`` is the prompt sent in the request; ``origin_prompt`` the prompt of the
    task or image a poll or download is about.
    """

    prompt: str | None = None
    origin_prompt: str | None = None
    task_id: str | None = None
    out_trade_no: str | None = None
    model: str | None = None

    def key(self) -> str:
        """The one string that best names this request's subject."""
        return self.prompt or self.task_id or self.out_trade_no or self.origin_prompt or ""


@dataclass(slots=True)
class Rule:
    """One script rule; see the module docstring."""

    steps: tuple[tuple[FaultSpec, ...], ...]
    then: tuple[FaultSpec, ...] | None = None
    routes: frozenset[str] | None = None
    prompt: str | None = None
    prompt_contains: str | None = None
    task_id: str | None = None
    out_trade_no: str | None = None
    model: str | None = None
    used: int = field(default=0)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.used < len(self.steps) or self.then is not None

    def matches(self, route: str, ident: Ident) -> bool:
        if self.routes is not None and route not in self.routes:
            return False
        # Without a route, a prompt rule only matches requests that send the prompt;
        # naming a route (a poll, a download) lets it match what that prompt produced.
        prompt = ident.prompt if self.routes is None else (ident.prompt or ident.origin_prompt)
        if self.prompt is not None and prompt != self.prompt:
            return False
        if self.prompt_contains is not None and (
            prompt is None or self.prompt_contains not in prompt
        ):
            return False
        return (
            (self.task_id is None or ident.task_id == self.task_id)
            and (self.out_trade_no is None or ident.out_trade_no == self.out_trade_no)
            and (self.model is None or ident.model == self.model)
        )

    def take(self) -> tuple[FaultSpec, ...]:
        if self.used < len(self.steps):
            self.used += 1
            return self.steps[self.used - 1]
        self.used += 1
        return self.then or ()

    def describe(self) -> dict[str, Any]:
        return {**self.source, "used": self.used, "active": self.active}


def parse_rule(data: Mapping[str, Any]) -> Rule:
    """Build a rule from its TOML/JSON form, refusing unknown keys and unknown faults."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a script rule must be a table/object, got {type(data).__name__}")
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(
            f"unknown key(s) {sorted(unknown)} in script rule; allowed: {sorted(_KEYS)}"
        )
    if not any(data.get(key) is not None for key in (*_MATCHERS, "route")):
        raise ValueError(
            f"a script rule needs at least one of {', '.join((*_MATCHERS, 'route'))}: {dict(data)}"
        )
    steps_data = data.get("steps", [])
    if isinstance(steps_data, str) or not isinstance(steps_data, Iterable):
        raise ValueError(f"script rule 'steps' must be a list, got {steps_data!r}")
    steps = tuple(_parse_step(step) for step in steps_data)
    then = _parse_step(data["then"]) if data.get("then") is not None else None
    if not steps and then is None:
        raise ValueError(f"a script rule needs 'steps' or 'then': {dict(data)}")
    routes = _parse_routes(data.get("route"))
    return Rule(
        steps=steps,
        then=then,
        routes=routes,
        prompt=_text(data, "prompt"),
        prompt_contains=_text(data, "prompt_contains"),
        task_id=_text(data, "task_id"),
        out_trade_no=_text(data, "out_trade_no"),
        model=_text(data, "model"),
        source=dict(data),
    )


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"script rule {key!r} must be a string, got {value!r}")
    return value


def _parse_step(step: Any) -> tuple[FaultSpec, ...]:
    if isinstance(step, str):
        return parse_faults(step)
    if isinstance(step, list) and all(isinstance(part, str) for part in step):
        return parse_faults(",".join(step))
    raise ValueError(f"a script step must be a fault list like 'hang' or 'ok', got {step!r}")


def _parse_routes(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"script rule 'route' must be a route name or a list, got {value!r}")
    unknown = set(names) - set(ROUTES)
    if unknown:
        raise ValueError(f"unknown route(s) {sorted(unknown)}; routes: {', '.join(ROUTES)}")
    return frozenset(names)


def parse_rules(data: Any) -> list[Rule]:
    """Parse ``{"rules": [...]}`` or a bare list of rules."""
    if isinstance(data, Mapping):
        unknown = set(data) - {"rules", "replace"}
        if unknown:
            raise ValueError(f"unknown top-level key(s) {sorted(unknown)}; expected 'rules'")
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise ValueError("a script is a list of rules under the key 'rules'")
    return [parse_rule(rule) for rule in data]


def load_script(path: str | os.PathLike[str]) -> list[Rule]:
    """Read rules from a ``.toml`` file (``[[rules]]`` tables) or a ``.json`` file."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read script {file}: {exc.strerror}") from exc
    try:
        data = json.loads(raw) if file.suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"script {file} is not valid {file.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from exc
    try:
        return parse_rules(data)
    except ValueError as exc:
        raise ValueError(f"script {file}: {exc}") from exc


class Script:
    """The rules in force and how far each has got."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._initial = list(rules)
        self.rules: list[Rule] = []
        self.rewind()

    def rewind(self) -> None:
        """Back to the configured rules, each from its first step."""
        self.rules = [
            Rule(
                steps=rule.steps,
                then=rule.then,
                routes=rule.routes,
                prompt=rule.prompt,
                prompt_contains=rule.prompt_contains,
                task_id=rule.task_id,
                out_trade_no=rule.out_trade_no,
                model=rule.model,
                source=rule.source,
            )
            for rule in self._initial
        ]

    def add(self, rules: Iterable[Rule], *, replace: bool = False) -> None:
        if replace:
            self.rules = []
        self.rules.extend(rules)

    def next(self, route: str, ident: Ident) -> tuple[FaultSpec, ...] | None:
        """The faults the first active matching rule gives this request, or ``None``."""
        for rule in self.rules:
            if rule.active and rule.matches(route, ident):
                return rule.take()
        return None

    def describe(self) -> list[dict[str, Any]]:
        return [rule.describe() for rule in self.rules]
