"""Which faults a request gets: from its header, the script, a running burst or the profile.

One source decides per request, in that order. The random profile is seeded per
(route, subject, n-th request about that subject), so the faults a prompt meets do not
depend on how requests for other prompts interleave with it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from regen.sim._faults import APPLIES, CARRIED, PROFILE_APPLIES, FaultSpec, parse_faults
from regen.sim._script import Ident, Script


@dataclass(slots=True)
class Plan:
    """The faults chosen for one request."""

    faults: dict[str, FaultSpec] = field(default_factory=dict)
    carried: tuple[FaultSpec, ...] = ()
    ignored: tuple[str, ...] = ()
    source: str | None = None

    def get(self, name: str) -> FaultSpec | None:
        return self.faults.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.faults


NO_FAULTS = Plan()


class Injector:
    """Chooses faults for requests; holds the counters that make choices reproducible."""

    def __init__(self, profile: Mapping[str, float], seed: int, script: Script) -> None:
        self.seed = seed
        self.script = script
        self._profile = tuple(profile.items())
        self._by_route: dict[str, tuple[tuple[str, float], ...]] = {}
        self._specs: dict[str, tuple[FaultSpec, ...]] = {}
        self._counts: dict[tuple[str, str, str], int] = {}
        self._draws: dict[tuple[str, str], int] = {}
        self._burst: dict[str, int] = {}

    def reset(self) -> None:
        self._counts.clear()
        self._draws.clear()
        self._burst.clear()
        self.script.rewind()

    def plan(self, route: str, requested: str | None, ident: Ident) -> Plan:
        """Faults for this request; ``requested`` is its header/query value, if any.

        Raises ``ValueError`` when ``requested`` names an unknown fault.
        """
        if requested:
            specs = self._parse(requested)
            if any(spec.count is not None for spec in specs):
                key = (route, requested, ident.key())
                seen = self._counts.get(key, 0)
                self._counts[key] = seen + 1
                specs = tuple(spec for spec in specs if spec.count is None or seen < spec.count)
            return self._build(route, specs, "header")
        if self._burst.get(route):
            self._burst[route] -= 1
            return Plan({"rate_limit_burst": FaultSpec("rate_limit_burst")}, source="burst")
        if self.script.rules:
            scripted = self.script.next(route, ident)
            if scripted is not None:
                return self._build(route, scripted, "script")
        if self._profile:
            return self._draw(route, ident)
        return NO_FAULTS

    def _parse(self, text: str) -> tuple[FaultSpec, ...]:
        specs = self._specs.get(text)
        if specs is None:
            specs = parse_faults(text)
            if len(self._specs) < 1024:
                self._specs[text] = specs
        return specs

    def _build(self, route: str, specs: Iterable[FaultSpec], source: str) -> Plan:
        faults: dict[str, FaultSpec] = {}
        carried: list[FaultSpec] = []
        ignored: list[str] = []
        for spec in specs:
            if route in APPLIES[spec.name]:
                faults.setdefault(spec.name, spec)
            elif route in CARRIED.get(spec.name, ()):
                carried.append(spec)
            else:
                ignored.append(spec.name)
        burst = faults.get("rate_limit_burst")
        if burst is not None:
            self._burst[route] = max(0, int(burst.number(3)) - 1)
        if not (faults or carried or ignored):
            return NO_FAULTS
        return Plan(faults, tuple(carried), tuple(ignored), source)

    def _draw(self, route: str, ident: Ident) -> Plan:
        choices = self._by_route.get(route)
        if choices is None:
            choices = tuple((n, p) for n, p in self._profile if route in PROFILE_APPLIES[n])
            self._by_route[route] = choices
        if not choices:
            return NO_FAULTS
        subject = ident.key()
        nth = self._draws.get((route, subject), 0)
        self._draws[(route, subject)] = nth + 1
        draw = random.Random(f"{self.seed}|{route}|{subject}|{nth}").random()
        total = 0.0
        for name, probability in choices:
            total += probability
            if draw < total:
                return self._build(route, (FaultSpec(name),), "profile")
        return NO_FAULTS
