"""Running a plain step: one function call under its policy, result checkpointed as JSON."""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any

from regen.engine import _time
from regen.engine._context import StepContext
from regen.engine._json import NotJSON, decode, encode
from regen.engine._outcome import Outcome, cache_key, error_of
from regen.store import LinkArtifact, PutCache, StepStatus, Write

if TYPE_CHECKING:
    from regen.engine._execute import Execution, StepState
    from regen.engine._flow import StepSpec


async def run_plain(ex: Execution, spec: StepSpec, rec: StepState) -> Outcome:
    """Run ``spec`` once (under its policy) and return what to checkpoint."""
    ctx = StepContext(ex, spec.name, ex.key(spec.name, rec.generation))
    cached_key = None
    if spec.cache is not None:
        inputs: Any = (
            spec.cache.key(ctx)
            if spec.cache.key is not None
            else {"params": ex.params, "results": dict(ex.results)}
        )
        cached_key = cache_key(ex.flow.name, spec.name, spec.version, inputs)
        if not rec.refresh:
            hit = await ex.store.cache_get(cached_key, _time.now())
            if hit is not None:
                ex.saved("saved_by_cache")
                return Outcome(StepStatus.SUCCEEDED, decode(hit), hit, data={"cached": True})
    try:
        value = await _call(ex, spec, ctx)
    except Exception as exc:
        return Outcome(StepStatus.FAILED, error=error_of(exc))
    return _checkpoint(ex, spec, value, cached_key)


def run_now(ex: Execution, spec: StepSpec, rec: StepState) -> Outcome:
    """:func:`run_plain` for a ``quick`` step run inline: no awaiting, no detours."""
    ctx = StepContext(ex, spec.name, ex.key(spec.name, rec.generation))
    ex.blocking = True  # its events are committed as they come: the event loop is blocked
    try:
        value = spec.fn(ctx)
    except Exception as exc:
        return Outcome(StepStatus.FAILED, error=error_of(exc))
    finally:
        ex.blocking = False
    if type(value) in _SCALARS:  # its JSON at once: no artifacts inside, reads back as itself
        return Outcome(StepStatus.SUCCEEDED, value, encode(value, ""))
    return _checkpoint(ex, spec, value, None)


def _checkpoint(ex: Execution, spec: StepSpec, value: Any, cached_key: str | None) -> Outcome:
    """A step's value as its checkpoint (JSON), with the artifacts and cache entry it adds."""
    try:
        found: list[str] = []
        output = encode(value, _not_json(spec.name), found)
    except NotJSON as exc:
        return Outcome(StepStatus.FAILED, error=error_of(exc))
    writes: list[Write] = [LinkArtifact(sha, spec.name) for sha in found] if found else []
    if cached_key is not None:
        ttl = spec.cache.ttl if spec.cache is not None else None
        at = _time.now()
        writes.append(
            PutCache(
                cached_key,
                f"{ex.flow.name}.{spec.name}",
                output,
                at,
                None if ttl is None else at + ttl,
            )
        )
    # What later steps see is the checkpoint read back; a plain scalar reads back as itself.
    seen = value if type(value) in _SCALARS else decode(output)
    return Outcome(StepStatus.SUCCEEDED, seen, output, None, None, writes)


async def _call(ex: Execution, spec: StepSpec, ctx: StepContext) -> Any:
    """Call the step's function under its policy: in the pool, or inline under ``engine.sync.run``
    (its events are then committed as they come: the event loop is blocked meanwhile)."""
    policy = spec.policy
    if policy.attempts == 1 and policy.timeout is None and policy.deadline is None:
        # Nothing to retry or time: call it directly, as the policy would.
        if spec.is_async:
            return await spec.fn(ctx)
        if not ex.inline_sync:
            return await ex.in_thread(spec.fn, ctx)
        return _inline(ex, spec.fn, ctx)
    policy = ex.policy_for(spec, ctx.idempotency_key)
    fn = _counting(spec.fn, ctx)
    if spec.is_async:
        return await policy.acall(fn, ctx)
    if not ex.inline_sync:
        return await ex.in_thread(policy.call, fn, ctx)
    return _inline(ex, policy.call, fn, ctx)


def _inline(ex: Execution, fn: Any, *args: Any) -> Any:
    """Call sync ``fn`` on the event loop's thread, its events committed as they come."""
    ex.blocking = True
    try:
        return fn(*args)
    finally:
        ex.blocking = False


@functools.cache
def _not_json(step: str) -> str:
    return f"step {step!r} returned a value that is not JSON"


_SCALARS = frozenset({int, str, bool, type(None)})


def _counting(fn: Any, ctx: StepContext) -> Any:
    """``fn`` with ``ctx.attempt`` set to the attempt number before each call."""
    calls = [0]
    if inspect.iscoroutinefunction(fn):

        async def counted_async(c: StepContext) -> Any:
            calls[0] += 1
            c.attempt = calls[0]
            return await fn(c)

        return counted_async

    def counted(c: StepContext) -> Any:
        calls[0] += 1
        c.attempt = calls[0]
        return fn(c)

    return counted
