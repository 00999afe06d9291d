"""A circuit breaker as pure functions of a JSON-able value: notice an outage once.

The value lives in a :class:`~regen.providers.SharedState` under
``breaker:<provider>[:<model>]``; :func:`admit` runs before a call and :func:`record` after
it, each through ``state.update`` so every worker sharing the state sees one breaker.

- **closed** (no value, or ``{"state": "closed", …}``): calls go through. ``failures``
  outage failures in a row within ``window_s`` open it; so does a share of failed calls of
  at least ``failure_rate`` over at least ``min_calls`` calls within ``window_s``.
- **open** until ``until``: calls are refused at once, without a request.
- **half_open** after ``open_s``: at most ``probes`` calls at a time go through as probes;
  a probe that gets an answer closes the breaker, one that meets the outage again re-opens it.
- A burst of ``rate_limits`` rate-limited answers within ``window_s`` opens a **cooldown**
  instead: ``rate_limit_cooldown_s`` (or the server's longer ``Retry-After``), after which
  the breaker closes without probing, since the provider was answering all along.

Only outage kinds count (timeouts, connection failures, server errors, bad replies and
bad content); ``auth``, ``bad_request``, ``content_policy`` and the like are the caller's
problem, not the provider's, and leave the breaker as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regen.foundation import ConfigError, is_finite, is_whole
from regen.retry import Kind

#: Failures that mean the provider is down or broken, not that the request was wrong.
OUTAGE_KINDS: frozenset[Kind] = frozenset(
    {Kind.TIMEOUT, Kind.CONNECTION, Kind.SERVER_ERROR, Kind.BAD_RESPONSE, Kind.BAD_CONTENT}
)
#: Failures that prove the provider answered (a probe meeting one closes the breaker).
_ANSWERED: frozenset[Kind] = frozenset(
    {Kind.AUTH, Kind.BAD_REQUEST, Kind.CONTENT_POLICY, Kind.QUOTA_EXHAUSTED}
)
#: The rate window of ``failure_rate`` is kept in this many buckets.
_BUCKETS = 10

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def breaker_key(provider: str, model: str | None = None) -> str:
    """The shared-state key of a provider's breaker (per model when one is named)."""
    return f"breaker:{provider}:{model}" if model else f"breaker:{provider}"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a provider's breaker opens, and for how long. See the module docs.

    ``failures=0`` turns the count off and ``failure_rate=None`` the rate; ``enabled=False``
    the whole breaker (calls always go through).
    """

    failures: int = 5
    window_s: float = 30.0
    failure_rate: float | None = None
    min_calls: int = 10
    open_s: float = 30.0
    probes: int = 1
    rate_limits: int = 10
    rate_limit_cooldown_s: float = 5.0
    enabled: bool = True

    def __post_init__(self) -> None:
        _whole("failures", self.failures, 0)
        _whole("min_calls", self.min_calls, 1)
        _whole("probes", self.probes, 1)
        _whole("rate_limits", self.rate_limits, 0)
        for name in ("window_s", "open_s", "rate_limit_cooldown_s"):
            value = getattr(self, name)
            if not is_finite(value) or value <= 0:
                raise ConfigError(f"breaker {name}={value!r}: expected a number of seconds > 0")
        rate = self.failure_rate
        if rate is not None and (not is_finite(rate) or not 0 < rate <= 1):
            raise ConfigError(
                f"breaker failure_rate={rate!r}: expected a fraction above 0 and at most 1"
            )
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"breaker enabled={self.enabled!r}: expected true or false")


def _whole(name: str, value: object, minimum: int) -> None:
    if not is_whole(value) or value < minimum:
        raise ConfigError(f"breaker {name}={value!r}: expected a whole number ≥ {minimum}")


@dataclass(frozen=True, slots=True)
class Admission:
    """What :func:`admit` decided for one call.

    ``allowed`` calls go through; a ``probe`` holds one of the half-open breaker's probe
    slots until ``lease`` (wall-clock seconds). A refused call may go through again in
    ``retry_after`` seconds; ``cooldown``: it was refused because of a burst of rate
    limits, not an outage. ``track``: whether a success must be :func:`record`\\ ed
    (when it changes nothing, the caller skips the write).
    """

    allowed: bool
    probe: bool = False
    lease: float = 0.0
    retry_after: float = 0.0
    track: bool = False
    cooldown: bool = False


_GO = Admission(True)
_GO_TRACKED = Admission(True, track=True)


def admit(
    value: Any | None, now: float, settings: BreakerSettings, lease_s: float
) -> tuple[Any | None, Admission]:
    """Whether a call may go through now; a half-open breaker hands out probe slots held
    for ``lease_s`` seconds at most (a probe whose caller died frees its slot then)."""
    if value is None or not settings.enabled:
        return value, (_GO_TRACKED if settings.failure_rate is not None else _GO)
    state = value.get("state", CLOSED)
    if state == CLOSED:
        tracked = bool(value.get("fails")) or settings.failure_rate is not None
        return value, (_GO_TRACKED if tracked else _GO)
    if state == OPEN:
        until = float(value["until"])
        if now < until:
            cooldown = bool(value.get("cooldown"))
            return value, Admission(False, retry_after=until - now, cooldown=cooldown)
        if value.get("cooldown"):
            return None, _GO
        lease = now + lease_s
        return {**_opened_fields(value), "state": HALF_OPEN, "probes": [lease]}, Admission(
            True, probe=True, lease=lease, track=True
        )
    probes = [p for p in value.get("probes", ()) if p > now]
    if len(probes) < settings.probes:
        lease = now + lease_s
        return {**value, "probes": [*probes, lease]}, Admission(
            True, probe=True, lease=lease, track=True
        )
    wait = min(min(probes) - now, settings.open_s)
    return {**value, "probes": probes}, Admission(False, retry_after=max(wait, 0.0))


def record(
    value: Any | None,
    now: float,
    settings: BreakerSettings,
    *,
    kind: Kind | None,
    admission: Admission = _GO,
    retry_after: float | None = None,
    observed: bool = False,
) -> tuple[Any | None, str | None]:
    """The breaker after a call ended: ``kind`` is its failure's kind, ``None`` a success.

    ``observed``: the call was made outside the breaker (a health check); once an open
    breaker's time is up, such a call decides as a probe would.
    Returns the new value and what changed, if anything: ``"opened"``, ``"reopened"``
    (a probe failed), ``"cooldown"`` (a burst of rate limits), ``"closed"`` (a probe was
    answered).
    """
    if not settings.enabled:
        return value, None
    state = CLOSED if value is None else value.get("state", CLOSED)
    if observed and value is not None and state == OPEN and now >= float(value["until"]):
        value, state = {**value, "state": HALF_OPEN, "probes": []}, HALF_OPEN
    if admission.probe or state == HALF_OPEN:
        return _after_probe(value, now, settings, kind, admission)
    if state == OPEN:
        return value, None  # a call let through before it opened: the breaker knows already
    if kind is Kind.RATE_LIMITED:
        return _rate_limited(value, now, settings, retry_after)
    if kind is None:
        if value is None:
            return (_window(None, now, settings, failed=False), None)
        return _tidy({**value, "fails": 0, "w": _calls(value, now, settings, failed=False)}), None
    if kind not in OUTAGE_KINDS:
        return value, None
    current = value or {}
    first = current.get("first")
    fails = int(current.get("fails", 0))
    if not fails or first is None or now - float(first) > settings.window_s:
        fails, first = 0, now
    fails += 1
    calls = _calls(current, now, settings, failed=True)
    if _should_open(fails, calls, settings):
        return _open(now, settings.open_s, kind), "opened"
    return {**current, "state": CLOSED, "fails": fails, "first": first, "w": calls}, None


def _after_probe(
    value: Any | None,
    now: float,
    settings: BreakerSettings,
    kind: Kind | None,
    admission: Admission,
) -> tuple[Any | None, str | None]:
    state = CLOSED if value is None else value.get("state", CLOSED)
    if state != HALF_OPEN:
        return value, None  # another probe decided already
    if kind is None or kind in _ANSWERED or kind is Kind.RATE_LIMITED:
        return None, "closed"
    if kind in OUTAGE_KINDS:
        return _open(now, settings.open_s, kind), "reopened"
    # The probe proved nothing (a bug on our side, a cancelled call): free its slot.
    probes = list(value.get("probes", ())) if value else []
    if admission.lease in probes:
        probes.remove(admission.lease)
    return {**(value or {}), "probes": probes}, None


def _rate_limited(
    value: Any | None, now: float, settings: BreakerSettings, retry_after: float | None
) -> tuple[Any | None, str | None]:
    if not settings.rate_limits:
        return value, None
    current = value or {}
    recent = [t for t in current.get("rl", ()) if now - t <= settings.window_s]
    recent.append(now)
    if len(recent) >= settings.rate_limits:
        pause = max(settings.rate_limit_cooldown_s, retry_after or 0.0)
        opened = _open(now, pause, Kind.RATE_LIMITED)
        opened["cooldown"] = True
        return opened, "cooldown"
    return {**current, "state": CLOSED, "rl": recent}, None


def _open(now: float, seconds: float, kind: Kind) -> dict[str, Any]:
    return {"state": OPEN, "until": now + seconds, "opened": now, "kind": str(kind)}


def _opened_fields(value: dict[str, Any]) -> dict[str, Any]:
    return {"opened": value.get("opened"), "kind": value.get("kind"), "until": value["until"]}


def _should_open(fails: int, calls: list[list[float]], settings: BreakerSettings) -> bool:
    if settings.failures and fails >= settings.failures:
        return True
    if settings.failure_rate is None:
        return False
    total = sum(int(b[1]) for b in calls)
    failed = sum(int(b[2]) for b in calls)
    return total >= settings.min_calls and failed / total >= settings.failure_rate


def _calls(
    value: dict[str, Any], now: float, settings: BreakerSettings, *, failed: bool
) -> list[list[float]]:
    """The rate window's buckets ``[start, calls, failed]`` with this call added (an empty
    list when no rate is watched)."""
    if settings.failure_rate is None:
        return []
    width = settings.window_s / _BUCKETS
    start = (now // width) * width
    buckets = [list(b) for b in value.get("w", ()) if now - b[0] < settings.window_s]
    if buckets and buckets[-1][0] == start:
        buckets[-1][1] += 1
        buckets[-1][2] += int(failed)
    else:
        buckets.append([start, 1, int(failed)])
    return buckets


def _window(value: Any | None, now: float, settings: BreakerSettings, *, failed: bool) -> Any:
    calls = _calls(value or {}, now, settings, failed=failed)
    return {"state": CLOSED, "w": calls} if calls else None


def _tidy(value: dict[str, Any]) -> dict[str, Any] | None:
    """A closed breaker with nothing to remember is no value at all."""
    if not value.get("fails") and not value.get("w") and not value.get("rl"):
        return None
    return value


def breaker_status(value: Any | None, now: float) -> dict[str, Any]:
    """A breaker's state for people and dashboards: ``state`` (``closed``, ``open``,
    ``half_open``), ``kind`` (what opened it), ``opened`` and ``retry_after`` (seconds until
    it lets calls through again, 0 when it does now)."""
    if value is None:
        return {"state": CLOSED, "kind": None, "opened": None, "retry_after": 0.0}
    state = value.get("state", CLOSED)
    left = 0.0
    if state == OPEN:
        left = max(0.0, float(value["until"]) - now)
        if left == 0.0:
            state = HALF_OPEN
    return {
        "state": state,
        "kind": value.get("kind") if state != CLOSED else None,
        "opened": value.get("opened") if state != CLOSED else None,
        "retry_after": round(left, 3),
    }
