"""Declaring a flow: a named, ordered list of steps known before any run starts."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, TypeVar, overload

from regen.engine import _params
from regen.engine._errors import FlowError, ParamsError
from regen.engine._params import Param
from regen.foundation import is_finite, is_whole
from regen.retry import Policy

Kind = Literal["step", "map", "stream"]
F = TypeVar("F", bound=Callable[..., Any])
#: ``resources(params)``: what a run's steps share (clients, folders), as ``ctx.resources``;
#: an async or sync context manager (entered around the execution), or the value itself.
Resources = Callable[[Mapping[str, Any]], Any]
#: Plain steps run once unless given a policy; a failed run is retried as a whole.
STEP_POLICY = Policy(attempts=1, timeout=None)
#: Map items and stream attempts are retried by default: weather, not bugs.
ITEM_POLICY = Policy(attempts=3, timeout=300.0, wait=1.0, max_wait=30.0)


@dataclass(frozen=True, slots=True)
class Cache:
    """Reuse a result for identical inputs: ``cache=Cache(ttl=3600)``.

    ``key(ctx)`` (plain steps) or ``key(ctx, item)`` (map items) returns the JSON value
    that identifies the inputs (for generation: provider, model, prompt, parameters). By
    default a map item's key is the item itself, a plain step's its params and the
    results of earlier steps. ``ttl`` (seconds) bounds how long an entry is reused.
    """

    key: Callable[..., Any] | None = None
    ttl: float | None = None

    def __post_init__(self) -> None:
        ttl = self.ttl
        if ttl is not None and not (isinstance(ttl, int | float) and 0 < ttl < float("inf")):
            raise FlowError(
                f"Cache(ttl={ttl!r}): ttl is seconds, a positive finite number (None: no expiry)"
            )
        if self.key is not None and not callable(self.key):
            raise FlowError(f"Cache(key={self.key!r}): key must be a function of the inputs")


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One declared step. ``items``/``concurrency``/``quota``/``key`` are for map steps.

    ``side_effect``: the step acts outside regen (publishes, pays, sends); running it
    again repeats that effect, so a retry that would do so says it.
    """

    name: str
    kind: Kind
    fn: Callable[..., Any]
    policy: Policy
    version: int = 1
    cache: Cache | None = None
    items: str | Callable[..., Any] | None = None
    concurrency: int = 1
    quota: int | str | Callable[..., Any] | None = None
    key: Callable[[Any], Any] | None = None
    side_effect: bool = False

    is_async: bool = field(init=False, compare=False)
    """Whether the function is a coroutine (or async generator) function."""
    quick: bool = field(init=False, compare=False)
    """A sync plain step with nothing to retry, time or cache (``engine.sync.run`` calls it
    directly, inline)."""

    def __post_init__(self) -> None:
        is_async = inspect.iscoroutinefunction(self.fn) or inspect.isasyncgenfunction(self.fn)
        policy = self.policy
        object.__setattr__(self, "is_async", is_async)
        object.__setattr__(
            self,
            "quick",
            (
                self.kind == "step"
                and not is_async
                and self.cache is None
                and policy.attempts == 1
                and policy.timeout is None
                and policy.deadline is None
            ),
        )


def _positional(fn: Callable[..., Any], count: int, what: str, names: str = "") -> None:
    try:
        signature = inspect.signature(fn)
        signature.bind(*range(count))
    except TypeError:
        raise FlowError(
            f"{what} {getattr(fn, '__name__', fn)!r} must accept {count} positional "
            f"argument{'s' if count > 1 else ''} "
            f"({names or ('ctx, item' if count == 2 else 'ctx')})"
        ) from None
    except ValueError:  # pragma: no cover - builtins without a signature
        return


#: Bounds of a run's automatic retries: more retries than this is a typo rather than a
#: plan, and a longer delay would schedule the retry past any date worth keeping.
MAX_AUTO_RETRIES = 10_000
MAX_RETRY_DELAY_S = 365 * 86_400.0


def auto_retries_problem(max_retries: object, retry_delay: object) -> str | None:
    """What is wrong with automatic retries of ``max_retries`` × ``retry_delay`` seconds,
    or ``None`` when they are fine."""
    if not is_whole(max_retries) or not 0 <= max_retries <= MAX_AUTO_RETRIES:
        return (
            f"max_retries={max_retries!r}: expected a whole number from 0 to {MAX_AUTO_RETRIES:,}"
        )
    if not is_finite(retry_delay) or not 0 <= retry_delay <= MAX_RETRY_DELAY_S:
        return (
            f"retry_delay={retry_delay!r}: expected seconds from 0 to {MAX_RETRY_DELAY_S:,.0f} "
            "(a year)"
        )
    return None


class Flow:
    """A named flow: ``flow = Flow("digest", params={"topic": str})``, then steps in order::

        @flow.step()
        async def fetch(ctx): ...

        @flow.map(items="fetch", concurrency=8, quota="params.count")
        async def illustrate(ctx, item): ...

        @flow.stream()
        async def write(ctx):
            yield "text"

    ``max_retries``/``retry_delay``: automatic retries of a failed run from its failed
    step (the paper pipeline example: 3 × 30 s); 0 switches them off. ``resources``: a
    function of the run's params giving what its steps share (clients, folders:
    ``ctx.resources``), in any process that executes the run (``regen run``, ``regen
    worker``, a take-over); an async or sync context manager is entered around the
    execution and closed after it. ``key``: a function of the run's params giving the
    business key of a run started without one (``regen run``, a worker's client, the
    service), so that however it is started there is one run per key:
    ``key=lambda p: f"digest:{p['day']}"`` is one run a day.
    """

    def __init__(
        self,
        name: str,
        *,
        params: Mapping[str, type | Param] | None = None,
        version: int = 1,
        max_retries: int = 0,
        retry_delay: float = 30.0,
        description: str = "",
        resources: Resources | None = None,
        key: Callable[[Mapping[str, Any]], str] | None = None,
    ) -> None:
        if not name or not isinstance(name, str) or any(c.isspace() for c in name):
            raise FlowError(f"flow name {name!r} must be a non-empty string without spaces")
        problem = auto_retries_problem(max_retries, retry_delay)
        if problem is not None:
            raise FlowError(f"flow {name!r}: {problem}")
        for what, fn in (("resources", resources), ("key", key)):
            if fn is None:
                continue
            if not callable(fn):
                raise FlowError(
                    f"flow {name!r}: {what} must be a function of the run's params, "
                    f"not {type(fn).__name__}"
                )
            _positional(fn, 1, f"flow {name!r}: {what}", "params")
        self.name = name
        self.version = version
        self.params = _params.declare(params)
        self._dated = any(p.type is date for p in self.params.values())
        self.max_retries = max_retries
        self.retry_delay = float(retry_delay)
        self.description = description
        self.resources = resources
        self.key = key
        self.module: str = sys._getframe(1).f_globals.get("__name__", "__main__")
        self._steps: list[StepSpec] = []
        self._ref: str | None = None

    def __repr__(self) -> str:
        return f"Flow({self.name!r}, steps={[s.name for s in self._steps]})"

    @property
    def steps(self) -> tuple[StepSpec, ...]:
        """The steps in order."""
        return tuple(self._steps)

    @property
    def ref(self) -> str | None:
        """The import string (``module:attr``) a worker loads this flow by, if it has one."""
        if self._ref is None:
            module = sys.modules.get(self.module)
            for attr, value in vars(module).items() if module else ():
                if value is self:
                    self._ref = f"{self.module}:{attr}"
                    break
        return self._ref

    @ref.setter
    def ref(self, value: str) -> None:
        self._ref = value

    def step_named(self, name: str) -> StepSpec:
        """The step called ``name`` (:class:`FlowError` naming the steps otherwise)."""
        for spec in self._steps:
            if spec.name == name:
                return spec
        names = ", ".join(s.name for s in self._steps) or "none"
        raise FlowError(f"flow {self.name!r} has no step {name!r}; its steps: {names}")

    def check_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Params checked against the declaration, defaults filled in, as the run stores them
        (JSON: a date as ISO text); :class:`ParamsError` says what is expected."""
        return _params.check(self.name, self.params, params)

    def key_of(self, values: Mapping[str, Any]) -> str | None:
        """The business key the flow's ``key`` gives checked params ``values`` (``None``
        without one); :class:`ParamsError` when it cannot give one for them."""
        if self.key is None:
            return None
        try:
            key = self.key(self.step_params(values))
        except Exception as exc:  # the user's function: whatever it raised, said plainly
            raise ParamsError(
                f"flow {self.name!r}: no business key for these params: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(key, str) or not key:
            raise ParamsError(
                f"flow {self.name!r}: its key function gave {key!r}; expected non-empty text"
            )
        return key

    def step_params(self, stored: Mapping[str, Any]) -> Mapping[str, Any]:
        """The params steps and resources see for a run's stored params (a date param as
        :class:`datetime.date`)."""
        return _params.restore(self.params, stored) if self._dated else stored

    def parse_params(self, texts: Mapping[str, str]) -> dict[str, Any]:
        """Params from command-line text (``{"count": "3"}``), then checked."""
        values: dict[str, Any] = {}
        for name, text in texts.items():
            param = self.params.get(name)
            try:
                values[name] = text if param is None else param.parse(name, text)
            except ParamsError as exc:
                raise ParamsError(f"flow {self.name!r}: {exc}") from None
        return self.check_params(values)

    def describe(self) -> dict[str, Any]:
        """The flow's shape as JSON (for dashboards and ``--json``)."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "description": self.description,
            "params": {n: {"type": p.describe(), "help": p.help} for n, p in self.params.items()},
            "steps": [
                {"name": s.name, "kind": s.kind, "side_effect": s.side_effect} for s in self._steps
            ],
            "max_retries": self.max_retries,
            "retry_delay": self.retry_delay,
        }

    # --- declaring steps ---------------------------------------------------------------------

    def _add(self, spec: StepSpec) -> None:
        if any(s.name == spec.name for s in self._steps):
            raise FlowError(
                f"flow {self.name!r}: a step named {spec.name!r} already exists; "
                "step names must be unique (pass name=...)"
            )
        self._steps.append(spec)

    def _source(self, items: str | Callable[..., Any], step: str) -> None:
        if callable(items):
            return
        if not isinstance(items, str):
            raise FlowError(
                f"map step {step!r}: items must name an earlier step, a param "
                "('params.NAME') or be a function of ctx"
            )
        if items.startswith("params."):
            if items[7:] not in self.params:
                raise FlowError(
                    f"map step {step!r}: items={items!r} names no declared param; "
                    f"params: {', '.join(self.params) or 'none'}"
                )
        elif not any(s.name == items for s in self._steps):
            earlier = ", ".join(s.name for s in self._steps) or "none"
            raise FlowError(
                f"map step {step!r}: items={items!r} is not an earlier step of "
                f"flow {self.name!r} (earlier steps: {earlier})"
            )

    @overload
    def step(self, fn: F, /) -> F: ...
    @overload
    def step(
        self,
        *,
        name: str | None = None,
        policy: Policy | None = None,
        cache: bool | Cache = False,
        version: int = 1,
        side_effect: bool = False,
    ) -> Callable[[F], F]: ...
    def step(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        policy: Policy | None = None,
        cache: bool | Cache = False,
        version: int = 1,
        side_effect: bool = False,
    ) -> Any:
        """Declare a step ``fn(ctx)`` (async, or sync: run in a thread). Its return value is
        checkpointed as JSON before the next step starts. ``side_effect``: the step acts
        outside regen (a publish), so retrying it repeats that."""

        def add(func: Callable[..., Any]) -> Callable[..., Any]:
            _positional(func, 1, "step")
            if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
                raise FlowError(f"step {func.__name__!r} yields: declare it with flow.stream()")
            self._add(
                StepSpec(
                    name or func.__name__,
                    "step",
                    func,
                    policy or STEP_POLICY,
                    version,
                    _cache(cache),
                    side_effect=side_effect,
                )
            )
            return func

        return add(fn) if fn is not None else add

    def map(
        self,
        *,
        items: str | Callable[..., Any],
        name: str | None = None,
        concurrency: int = 4,
        policy: Policy | None = None,
        quota: int | str | Callable[..., Any] | None = None,
        key: Callable[[Any], Any] | None = None,
        cache: bool | Cache = False,
        version: int = 1,
        side_effect: bool = False,
    ) -> Callable[[F], F]:
        """Declare a map step ``fn(ctx, item)`` run over ``items``, each item retried under
        ``policy``, at most ``concurrency`` in flight in each process that runs them.

        The step's items are recorded (as JSON: ``fn`` receives an item as the store gives
        it back) when it starts; then the process executing the run and every worker with
        room run them, each with at most ``concurrency`` at once, so one large batch uses
        the concurrency of every worker. ``items``: an earlier step's name (its result is
        iterated), ``"params.NAME"``, or ``items(ctx)`` returning an iterable or async
        iterable (recorded page by page, never loaded whole). ``quota`` ("need K
        successes": an int, ``"params.NAME"`` or ``quota(ctx)``) starts items in order, never
        more at once than may still be needed, and skips the rest once K have succeeded.
        ``key(item)`` gives an item a stable key for idempotency keys and dashboards.
        ``side_effect``: each item acts outside regen, so retrying it repeats that.
        """

        def add(func: F) -> F:
            step = name or func.__name__
            _positional(func, 2, "map step")
            if not is_whole(concurrency) or concurrency < 1:
                raise FlowError(
                    f"map step {step!r}: concurrency={concurrency!r}; expected a whole number ≥ 1"
                )
            if isinstance(quota, int) and (not is_whole(quota) or quota < 1):
                raise FlowError(f"map step {step!r}: quota={quota!r}; expected a whole number ≥ 1")
            if isinstance(quota, str) and (
                not quota.startswith("params.") or quota[7:] not in self.params
            ):
                raise FlowError(f"map step {step!r}: quota={quota!r} names no declared param")
            self._source(items, step)
            self._add(
                StepSpec(
                    step,
                    "map",
                    func,
                    policy or ITEM_POLICY,
                    version,
                    _cache(cache),
                    items,
                    concurrency,
                    quota,
                    key,
                    side_effect,
                )
            )
            return func

        return add

    @overload
    def stream(self, fn: F, /) -> F: ...
    @overload
    def stream(
        self,
        *,
        name: str | None = None,
        policy: Policy | None = None,
        version: int = 1,
        side_effect: bool = False,
    ) -> Callable[[F], F]: ...
    def stream(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        policy: Policy | None = None,
        version: int = 1,
        side_effect: bool = False,
    ) -> Any:
        """Declare a streaming step: an async generator ``fn(ctx)`` whose text chunks are
        appended to the event log as they arrive; its result is the assembled text (or
        what it passes to ``ctx.set_output``)."""

        def add(func: Callable[..., Any]) -> Callable[..., Any]:
            _positional(func, 1, "streaming step")
            if not inspect.isasyncgenfunction(func):
                raise FlowError(
                    f"streaming step {func.__name__!r} must be an async generator "
                    "function (async def … yield)"
                )
            self._add(
                StepSpec(
                    name or func.__name__,
                    "stream",
                    func,
                    policy or ITEM_POLICY,
                    version,
                    side_effect=side_effect,
                )
            )
            return func

        return add(fn) if fn is not None else add


def _cache(cache: bool | Cache) -> Cache | None:
    if cache is True:
        return Cache()
    return cache or None
