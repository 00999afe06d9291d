"""``Policy``: how many attempts, how long each may take, and how long to wait between them."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from regen.foundation import ConfigError, env_float, env_int, env_seconds, is_finite, is_whole

if TYPE_CHECKING:
    from regen.retry._attempts import Attempt
    from regen.retry._classify import Classifier

P = ParamSpec("P")
R = TypeVar("R")

Hook = Callable[["Attempt"], Any]

#: Attempts above this need an explicit deadline: an effectively endless loop is a bug.
_MAX_ATTEMPTS_WITHOUT_DEADLINE = 100


@dataclass(frozen=True, slots=True)
class Policy:
    """How a call is retried.

    ``attempts`` counts every try, the first included (``attempts=2`` is "retry once").
    ``timeout`` bounds each attempt (seconds; ``None`` for none), ``deadline`` the whole call
    including waits (no attempt runs past the deadline, whatever its timeout). Waits grow
    from ``wait`` by ``multiplier`` up to ``max_wait`` (``multiplier=1`` gives fixed waits);
    ``jitter`` (0–1) shortens each wait by up to that fraction at random. A server's
    ``Retry-After`` replaces the computed wait when it asks for at most ``retry_after_max``
    seconds and the wait fits the deadline; otherwise the call gives up at once rather than
    sleep in vain.

    ``phases`` names timeouts for parts of one attempt (``{"download": 60}``) that adapters
    read with :func:`regen.retry.phase_timeout`. ``classifier`` is consulted before the
    built-in taxonomy (return ``None`` to defer). ``retry_unknown`` retries exceptions the
    taxonomy does not recognise (by default they are bugs and fail at once).
    ``idempotent=False`` marks a call that must not run twice (a payment): it is retried only
    when the failure proves the request never reached the server, or when
    ``idempotency_key`` is set. ``operation`` names the call in logs and errors;
    ``on_retry`` and ``on_give_up`` receive the failed :class:`Attempt`.

    ``thread=True`` runs each attempt of a sync function in a worker thread that is
    abandoned (left running) when the attempt's timeout passes, so a hung call that ignores
    :func:`regen.retry.remaining` still ends as a ``timeout``. ``reraise=True`` raises the
    last error itself instead of :class:`GiveUp` (its attempts in ``error.attempts``).
    """

    attempts: int = 3
    timeout: float | None = 300.0
    deadline: float | None = None
    wait: float = 1.0
    multiplier: float = 2.0
    max_wait: float = 30.0
    jitter: float = 0.0
    retry_after_max: float = 120.0
    phases: Mapping[str, float] = field(default_factory=dict, hash=False)
    classifier: Classifier | None = field(default=None, compare=False)
    retry_unknown: bool = False
    idempotent: bool = True
    idempotency_key: str | None = None
    operation: str | None = None
    on_retry: Hook | None = field(default=None, compare=False)
    on_give_up: Hook | None = field(default=None, compare=False)
    thread: bool = False
    reraise: bool = False

    def __post_init__(self) -> None:
        _check_int("attempts", self.attempts, minimum=1)
        if self.attempts > _MAX_ATTEMPTS_WITHOUT_DEADLINE and self.deadline is None:
            raise ConfigError(
                f"attempts={self.attempts} without a deadline could retry for hours: "
                f"set deadline= (seconds) or use at most {_MAX_ATTEMPTS_WITHOUT_DEADLINE} attempts"
            )
        _check_seconds("timeout", self.timeout, optional=True, positive=True)
        _check_seconds("deadline", self.deadline, optional=True, positive=True)
        _check_seconds("wait", self.wait)
        _check_seconds("max_wait", self.max_wait)
        _check_seconds("retry_after_max", self.retry_after_max)
        if not (isinstance(self.multiplier, (int, float)) and 1 <= self.multiplier < math.inf):
            raise ConfigError(f"multiplier={self.multiplier!r}: expected a number ≥ 1")
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter <= 1):
            raise ConfigError(f"jitter={self.jitter!r}: expected a fraction from 0 to 1")
        if self.max_wait < self.wait:
            raise ConfigError(
                f"max_wait={self.max_wait!r} is below wait={self.wait!r}: "
                "the cap must be ≥ the first wait"
            )
        for name, seconds in self.phases.items():
            _check_seconds(f"phases[{name!r}]", seconds, positive=True)
        object.__setattr__(self, "phases", MappingProxyType(dict(self.phases)))
        if self.thread and self.timeout is None:
            raise ConfigError(
                "thread=True needs a timeout: it abandons the attempt at its deadline"
            )

    # --- waits -------------------------------------------------------------------------

    def backoff(self, number: int) -> float:
        """The wait after failed attempt ``number`` (1-based), before any ``Retry-After``."""
        base = self.wait * self.multiplier ** (number - 1) if self.multiplier != 1 else self.wait
        base = min(self.max_wait, base)
        if self.jitter:
            base *= 1.0 - self.jitter * random.random()
        return base

    # --- building ------------------------------------------------------------------------

    def replace(self, **changes: Any) -> Policy:
        """A copy with some settings changed (``policy.replace(operation="pay")``)."""
        return replace(self, **changes)

    @classmethod
    def fixed(cls, wait: float, **settings: Any) -> Policy:
        """A policy with the same ``wait`` between every two attempts."""
        settings.setdefault("max_wait", max(wait, settings.get("max_wait", 0.0)))
        return cls(wait=wait, multiplier=1.0, **settings)

    @classmethod
    def from_env(
        cls, prefix: str, environ: Mapping[str, str] | None = None, **defaults: Any
    ) -> Policy:
        """A policy read from environment variables named ``{prefix}_…``.

        ``MAX_ATTEMPTS`` (attempts in total, default 3), ``RETRY_SLEEP_S`` (the wait
        between attempts, default 2, fixed unless ``BACKOFF_MULTIPLIER`` is set),
        ``BACKOFF_MULTIPLIER``, ``BACKOFF_MAX_S``, ``JITTER``, ``TIMEOUT_S`` (per attempt,
        default 180), ``DEADLINE_S``, and ``{PHASE}_TIMEOUT_S`` for any named phase
        (``DOWNLOAD_TIMEOUT_S``, default 60). ``defaults`` are :class:`Policy` settings used
        where a variable is unset. A bad value raises :class:`ConfigError` naming the
        variable and what it expects.
        """
        env = os.environ if environ is None else environ
        prefix = prefix.rstrip("_").upper()
        settings: dict[str, Any] = {
            "attempts": 3,
            "wait": 2.0,
            "multiplier": 1.0,
            "timeout": 180.0,
            "phases": {"download": 60.0},
        }
        settings.update(defaults)
        phases = dict(settings.get("phases") or {})
        read: dict[str, int | float | None] = {
            "attempts": env_int(
                f"{prefix}_MAX_ATTEMPTS",
                minimum=1,
                what="a whole number of attempts ≥ 1 (the first attempt included)",
                environ=env,
            ),
            "wait": env_seconds(f"{prefix}_RETRY_SLEEP_S", environ=env),
            "multiplier": env_float(
                f"{prefix}_BACKOFF_MULTIPLIER", minimum=1, what="a multiplier ≥ 1", environ=env
            ),
            "max_wait": env_seconds(f"{prefix}_BACKOFF_MAX_S", environ=env),
            "jitter": env_float(
                f"{prefix}_JITTER",
                minimum=0,
                maximum=1,
                what="a fraction from 0 to 1",
                environ=env,
            ),
            "timeout": env_seconds(f"{prefix}_TIMEOUT_S", positive=True, environ=env),
            "deadline": env_seconds(f"{prefix}_DEADLINE_S", positive=True, environ=env),
        }
        settings.update({key: value for key, value in read.items() if value is not None})
        head = f"{prefix}_"
        for name in env:
            if name.startswith(head) and name.endswith("_TIMEOUT_S"):
                phase = name[len(head) : -len("_TIMEOUT_S")]
                seconds = env_seconds(name, positive=True, environ=env)
                if phase and phase != "DEADLINE" and seconds is not None:
                    phases[phase.lower()] = seconds
        settings["phases"] = phases
        wait = settings["wait"]
        if read["max_wait"] is not None and read["max_wait"] < wait:
            raise ConfigError(
                f"{prefix}_BACKOFF_MAX_S={read['max_wait']:g}: expected at least the first "
                f"wait, {wait:g} s ({prefix}_RETRY_SLEEP_S or its default)"
            )
        settings["max_wait"] = max(settings.get("max_wait", 30.0), wait)
        attempts = settings["attempts"]
        if (
            read["attempts"] is not None
            and attempts > _MAX_ATTEMPTS_WITHOUT_DEADLINE
            and settings.get("deadline") is None
        ):
            raise ConfigError(
                f"{prefix}_MAX_ATTEMPTS={attempts} without {prefix}_DEADLINE_S could retry for "
                f"hours: set {prefix}_DEADLINE_S (seconds) or use at most "
                f"{_MAX_ATTEMPTS_WITHOUT_DEADLINE} attempts"
            )
        try:
            return cls(**settings)
        except TypeError as exc:
            known = ", ".join(f.name for f in fields(cls))
            raise ConfigError(f"Policy.from_env({prefix!r}): {exc}; settings are: {known}") from exc

    # --- running (bodies live in _run.py) ----------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` under this policy; raise :class:`GiveUp` when it fails.

        ``fn`` is a sync function: one that returns an awaitable (an ``async def``, or
        ``lambda: some_async_api()``) is refused with :class:`AwaitableInSyncCall`, since its
        failures would only surface where it is awaited; run it with :meth:`acall`.
        """
        from regen.retry._run import call  # noqa: PLC0415 - _run imports this module

        return call(self, fn, *args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` under this policy; raise :class:`GiveUp` when it fails.

        ``fn`` is an ``async def`` or any function that returns an awaitable
        (``lambda: some_async_api()``): the awaitable is awaited inside the attempt, within
        its timeout, so its failures are retried.
        """
        from regen.retry._run import acall  # noqa: PLC0415 - _run imports this module

        return await acall(self, fn, *args, **kwargs)

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Use the policy as a decorator: ``@Policy(attempts=2, timeout=30)``."""
        from regen.retry._run import wrap  # noqa: PLC0415 - _run imports this module

        return wrap(self, fn)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not is_whole(value) or value < minimum:
        raise ConfigError(f"{name}={value!r}: expected a whole number ≥ {minimum}")


def _check_seconds(
    name: str, value: object, *, optional: bool = False, positive: bool = False
) -> None:
    if value is None and optional:
        return
    ok = is_finite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        what = "a number of seconds > 0" if positive else "a number of seconds ≥ 0"
        if optional:
            what += " (or None)"
        raise ConfigError(f"{name}={value!r}: expected {what}")
