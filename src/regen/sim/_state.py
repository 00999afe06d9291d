"""Everything one simulator instance remembers between requests."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from regen.sim._config import SimConfig
from regen.sim._errors import dumps
from regen.sim._faults import FaultSpec
from regen.sim._images import ImageCache
from regen.sim._injector import Injector
from regen.sim._limits import Outage, RequestBucket
from regen.sim._pay import Ledger
from regen.sim._script import Script, load_script, parse_rules
from regen.sim._stats import Stats
from regen.sim._tasks import TaskBoard

NOMINAL_RPM = 10_000
_TOKEN_HEADERS = (
    (b"x-ratelimit-limit-tokens", b"2000000"),
    (b"x-ratelimit-remaining-tokens", b"1999000"),
    (b"x-ratelimit-reset-tokens", b"30ms"),
)


@dataclass(frozen=True, slots=True)
class FileRef:
    """A generated file the simulator serves: what to draw, and how big."""

    kind: str
    prompt: str
    width: int
    height: int
    variant: int = 0


class RateWindow:
    """A fixed one-minute window of requests, reported in ``x-ratelimit-*`` headers."""

    def __init__(self, rpm: int | None) -> None:
        self.limit = rpm or NOMINAL_RPM
        self.enforce = rpm is not None
        self._limit_bytes = str(self.limit).encode()
        self.reset()

    def reset(self) -> None:
        self.window = time.monotonic()
        self.count = 0

    def hit(self) -> tuple[bool, list[tuple[bytes, bytes]], float]:
        """Count a request: (allowed, headers, seconds until the window resets)."""
        now = time.monotonic()
        if now - self.window >= 60:
            self.window, self.count = now, 0
        self.count += 1
        remaining = max(0, self.limit - self.count)
        left = 60 - (now - self.window)
        headers = [
            (b"x-ratelimit-limit-requests", self._limit_bytes),
            (b"x-ratelimit-remaining-requests", str(remaining).encode()),
            (b"x-ratelimit-reset-requests", f"{left:.3f}s".encode()),
            *_TOKEN_HEADERS,
        ]
        return (not self.enforce or self.count <= self.limit), headers, left


class SimState:
    """The configuration plus all state: stats, tasks, files, payments, faults."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        rules = load_script(config.script) if config.script is not None else []
        rules += parse_rules(list(config.rules))
        self.script = Script(rules)
        self.injector = Injector(config.faults, config.seed, self.script)
        self.stats = Stats()
        self.tasks = TaskBoard(config.seed)
        self.ledger = Ledger()
        self.images = ImageCache()
        self.files: dict[str, FileRef] = {}
        self.rate = RateWindow(config.rpm)
        self.per_second = RequestBucket(config.rps, config.burst)
        self.outage = Outage(config.outage_after, config.outage_for)
        self.models = frozenset(config.models)
        self.models_body = dumps(
            {
                "object": "list",
                "data": [
                    {"id": model, "object": "model", "created": 1700000000, "owned_by": "regen-sim"}
                    for model in config.models
                ],
            }
        )
        self._latency = random.Random(config.seed)
        self._closing: asyncio.Event | None = None

    @property
    def closing(self) -> asyncio.Event:
        """Set when the server shuts down: hung and slow requests stop waiting."""
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    def reset(self) -> None:
        """Back to the state of a fresh start (generated file URLs stay valid)."""
        self.stats = Stats()
        self.tasks.reset()
        self.ledger.reset()
        self.injector.reset()
        self.rate.reset()
        self.per_second.configure(self.config.rps, self.config.burst)
        self.outage.configure(self.config.outage_after, self.config.outage_for)
        self._latency = random.Random(self.config.seed)

    def latency(self) -> float:
        config = self.config
        if not config.jitter:
            return config.latency
        return max(0.0, config.latency + self._latency.uniform(-config.jitter, config.jitter))

    def file_url(self, base: str, ref: FileRef, faults: tuple[FaultSpec, ...] = ()) -> str:
        """Register ``ref`` and give its URL; image faults ride along in the query."""
        digest = hashlib.sha256(
            f"{ref.kind}|{ref.width}x{ref.height}|{ref.variant}|{ref.prompt}".encode()
        ).hexdigest()[:24]
        name = f"{digest}.{ref.kind}"
        self.files[name] = ref
        expired = any(spec.name == "url_expired" for spec in faults)
        expires = int(time.time() + (-60 if expired else self.config.url_ttl))
        url = f"{base}/files/{name}?Expires={expires}&OSSAccessKeyId=regen-sim&Signature=sim"
        rest = [str(spec) for spec in faults if spec.name != "url_expired"]
        if rest:
            url += "&regen_fault=" + quote(",".join(rest))
        return url

    def snapshot(self) -> dict[str, Any]:
        data = self.stats.snapshot()
        data["tasks"] = self.tasks.snapshot()
        data["payments"] = self.ledger.snapshot()
        data["outage"] = self.outage.describe()
        data["limit"] = self.per_second.describe()
        return data
