"""Counters of what the simulator did, so tests can check retries from the server's side."""

from __future__ import annotations

import time
from typing import Any


class _RouteStats:
    __slots__ = ("outcomes", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.outcomes: dict[str, int] = {}
        self.statuses: dict[str, int] = {}


class _PromptStats:
    __slots__ = ("faults", "ok", "produced", "requests", "routes")

    def __init__(self) -> None:
        self.requests = 0
        self.ok = 0
        self.produced = 0
        self.routes: dict[str, int] = {}
        self.faults: dict[str, int] = {}


def _bump(counter: dict[str, int], key: str, by: int = 1) -> None:
    counter[key] = counter.get(key, 0) + by


class Stats:
    """Requests and outcomes per route, per fault and per prompt.

    An outcome is ``ok``, the name of the fault applied, or the kind of refusal
    (``unauthorized``, ``invalid_request``, ``not_found``, ``rate_limited``).
    """

    def __init__(self) -> None:
        self.started = time.time()
        self.requests = 0
        self.routes: dict[str, _RouteStats] = {}
        self.faults: dict[str, int] = {}
        self.ignored: dict[str, int] = {}
        self.prompts: dict[str, _PromptStats] = {}

    def begin(self, route: str, prompt: str | None) -> None:
        self.requests += 1
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = _RouteStats()
        stats.requests += 1
        if prompt is not None:
            entry = self._prompt(prompt)
            entry.requests += 1
            _bump(entry.routes, route)

    def outcome(self, route: str, prompt: str | None, outcome: str) -> None:
        _bump(self.routes[route].outcomes, outcome)
        if prompt is not None and outcome == "ok":
            self._prompt(prompt).ok += 1

    def fault(self, route: str, prompt: str | None, name: str) -> None:
        _bump(self.faults, name)
        if prompt is not None:
            _bump(self._prompt(prompt).faults, name)

    def ignored_fault(self, name: str) -> None:
        _bump(self.ignored, name)

    def status(self, route: str, status: int) -> None:
        _bump(self.routes[route].statuses, str(status))

    def produced(self, prompt: str, count: int = 1) -> None:
        self._prompt(prompt).produced += count

    def _prompt(self, prompt: str) -> _PromptStats:
        entry = self.prompts.get(prompt)
        if entry is None:
            entry = self.prompts[prompt] = _PromptStats()
        return entry

    def snapshot(self) -> dict[str, Any]:
        return {
            "uptime": round(time.time() - self.started, 3),
            "requests": self.requests,
            "routes": {
                name: {
                    "requests": route.requests,
                    "outcomes": dict(route.outcomes),
                    "statuses": dict(route.statuses),
                }
                for name, route in self.routes.items()
            },
            "faults": dict(self.faults),
            "ignored_faults": dict(self.ignored),
            "prompts": {
                prompt: {
                    "requests": entry.requests,
                    "ok": entry.ok,
                    "produced": entry.produced,
                    "routes": dict(entry.routes),
                    "faults": dict(entry.faults),
                }
                for prompt, entry in self.prompts.items()
            },
        }
