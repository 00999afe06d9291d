"""Running a map step: one function over many items, streamed, bounded, checkpointed per item."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regen.engine import _faults, _time
from regen.engine._context import StepContext, event_write
from regen.engine._errors import FlowError
from regen.engine._json import encode
from regen.engine._outcome import Outcome, cache_key, error_of
from regen.engine._slots import Slots
from regen.providers import serving
from regen.retry import Attempt, GiveUp, Policy
from regen.store import (
    AddEvent,
    EndItem,
    EventType,
    ItemStatus,
    LinkArtifact,
    PutCache,
    StartItem,
    StepStatus,
    Write,
)

if TYPE_CHECKING:
    from regen.engine._execute import Execution, StepState
    from regen.engine._flow import StepSpec

_PAGE = 1000
_PROGRESS_EVERY = 0.25  # seconds of real time between progress events
_SMALL_OUTPUT = 4096  # outputs up to this size are repeated in item.succeeded events


@dataclass(slots=True)
class _State:
    total: int | None
    seen: int = 0
    alive: int = 0
    succeeded: int = 0
    given_up: int = 0
    skipped: int = 0
    finished: int = 0
    error: BaseException | None = None
    last_progress: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self) -> None:
        self.changed.clear()
        await self.changed.wait()


async def _values(ex: Execution, spec: StepSpec, ctx: StepContext) -> Any:
    items = spec.items
    if isinstance(items, str):
        if items.startswith("params."):
            return ex.params[items[7:]]
        if ex.flow.step_named(items).kind == "map":
            return (item.output async for item in ctx.items(items))
        return ex.results[items]
    assert items is not None
    values = items(ctx)
    return await values if inspect.isawaitable(values) else values


async def _iterate(values: Any, step: str) -> AsyncIterator[Any]:
    if hasattr(values, "__aiter__"):
        async for value in values:
            yield value
        return
    try:
        iterator = iter(values)
    except TypeError:
        raise FlowError(
            f"map step {step!r}: its items are a {type(values).__name__}, not an iterable"
        ) from None
    for value in iterator:
        yield value


async def _merged(ex: Execution, step: str, values: Any) -> AsyncIterator[tuple[int, Any, Any]]:
    """``(idx, item, status from an earlier execution or None)``, reading the store in pages."""
    page: list[tuple[int, ItemStatus]] = []
    pos, after, more, idx = 0, -1, True, -1
    async for item in _iterate(values, step):
        idx += 1
        while True:
            while pos < len(page) and page[pos][0] < idx:
                pos += 1
            if pos < len(page) or not more:
                break
            page, pos = await ex.store.item_states(ex.run_id, step, after=after, limit=_PAGE), 0
            more = len(page) == _PAGE
            if page:
                after = page[-1][0]
        prior = page[pos][1] if pos < len(page) and page[pos][0] == idx else None
        if prior is ItemStatus.SUCCEEDED:
            ex.saved("saved_by_checkpoint")  # not run again: its checkpoint is kept
        yield idx, item, prior


def _quota(ex: Execution, spec: StepSpec, ctx: StepContext) -> int | None:
    quota = spec.quota
    if quota is None:
        return None
    value = (
        ex.params[quota[7:]]
        if isinstance(quota, str)
        else (quota(ctx) if callable(quota) else quota)
    )
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FlowError(f"map step {spec.name!r}: quota {value!r} is not a whole number ≥ 1")
    return value


async def run_map(ex: Execution, spec: StepSpec, rec: StepState) -> Outcome:
    """Run every item not yet done; an item that gives up is recorded and the step goes on."""
    ctx = StepContext(ex, spec.name, ex.key(spec.name, rec.generation))
    values = await _values(ex, spec, ctx)
    quota = _quota(ex, spec, ctx)
    state = _State(total=len(values) if hasattr(values, "__len__") else None)
    slots = Slots(spec.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    merged = _merged(ex, spec.name, values)
    rest: tuple[int, Any] | None = None

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and state.error is None:
            state.error = task.exception()
        state.changed.set()

    try:
        async for idx, item, prior in merged:
            state.seen += 1
            if prior is ItemStatus.SUCCEEDED:
                state.succeeded += 1
                continue
            if prior is ItemStatus.GIVEN_UP:
                state.given_up += 1
                continue
            ex.check_cancel()
            if quota is not None:
                while state.alive and state.succeeded + state.alive >= quota and not state.error:
                    await state.wait()
                if state.succeeded >= quota:
                    rest = (idx, item)
                    break
            while state.alive >= 2 * spec.concurrency and not state.error:
                await state.wait()
            if state.error:
                raise state.error
            await slots.acquire(retry=False)
            state.alive += 1
            task = asyncio.create_task(_run_item(ex, spec, rec, slots, state, idx, item))
            tasks.add(task)
            task.add_done_callback(done)
        while tasks and not state.error:
            await state.wait()
            ex.check_cancel()
        if state.error:
            raise state.error
    except BaseException:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if rest is not None:
        await _skip_rest(ex, spec, state, rest, merged)
    _progress(ex, spec, state, force=True)
    return _outcome(spec, state, quota)


async def _skip_rest(
    ex: Execution,
    spec: StepSpec,
    state: _State,
    first: tuple[int, Any],
    merged: AsyncIterator[tuple[int, Any, Any]],
) -> None:
    writes: list[Write] = []

    def skip(idx: int, item: Any) -> None:
        state.skipped += 1
        writes.append(
            EndItem(
                spec.name,
                idx,
                ItemStatus.SKIPPED,
                _time.now(),
                _item_key(spec, item),
                encode(item, "item"),
            )
        )
        if len(writes) >= 500:
            ex.outbox.add(list(writes))
            writes.clear()

    skip(*first)
    async for idx, item, _ in merged:
        state.seen += 1
        skip(idx, item)
    if writes:
        ex.outbox.add(writes)


def _item_key(spec: StepSpec, item: Any) -> str | None:
    return None if spec.key is None else str(spec.key(item))


async def _run_item(
    ex: Execution, spec: StepSpec, rec: StepState, slots: Slots, state: _State, idx: int, item: Any
) -> None:
    held = True  # the loop acquired the first attempt's slot
    key = _item_key(spec, item)
    ikey = ex.key(spec.name, rec.generation, key or str(idx))
    ctx = StepContext(ex, spec.name, ikey, item, idx, key)
    failed: list[Attempt] = []
    base: dict[str, Any] = {"step": spec.name, "item": idx, "key": key}
    try:
        ex.outbox.add(
            [
                StartItem(
                    spec.name,
                    idx,
                    _time.now(),
                    key,
                    encode(item, f"map step {spec.name!r}: item {idx}"),
                ),
                event_write(EventType.ITEM_STARTED, base, "item event"),
            ]
        )
        output, cached, cached_key = None, False, None
        if spec.cache is not None:
            inputs = spec.cache.key(ctx, item) if spec.cache.key is not None else item
            cached_key = cache_key(ex.flow.name, spec.name, spec.version, inputs)
            if not rec.refresh:
                output = await ex.store.cache_get(cached_key, _time.now())
                cached = output is not None
        found: list[str] = []
        served = None
        if output is None:

            async def attempt() -> str:
                nonlocal held
                ctx.attempt = len(failed) + 1
                if not held:
                    await slots.acquire(retry=True)
                    held = True
                try:
                    if spec.is_async:
                        value = await spec.fn(ctx, item)
                    else:
                        value = await ex.in_thread(spec.fn, ctx, item)
                    return encode(value, f"map step {spec.name!r}: item {idx} result", found)
                except BaseException:
                    slots.release()
                    held = False
                    raise

            output, served = await _served(
                ex.policy_for(spec, ikey, index=idx, failed=failed), attempt
            )
        _faults.point("after_item_work")
        await _commit(
            ex,
            _success(
                ex,
                spec,
                idx,
                key,
                output,
                failed,
                found,
                cached,
                None if cached else cached_key,
                base,
                served,
            ),
        )
        state.succeeded += 1
    except GiveUp as exc:
        attempts = [a.to_dict() for a in exc.attempts]
        await _commit(
            ex,
            [
                EndItem(
                    spec.name,
                    idx,
                    ItemStatus.GIVEN_UP,
                    _time.now(),
                    key,
                    None,
                    None,
                    encode(attempts, "attempts"),
                    encode(exc.errors, "errors"),
                ),
                event_write(
                    EventType.ITEM_GIVEN_UP,
                    {
                        **base,
                        "attempts": len(attempts),
                        "kind": str(exc.kind),
                        "errors": exc.errors,
                        "error": error_of(exc),
                    },
                    "item event",
                ),
            ],
        )
        state.given_up += 1
    finally:
        if held:
            slots.release()
        state.alive -= 1
        state.finished += 1
        state.changed.set()
    _progress(ex, spec, state)


async def _served(policy: Policy, attempt: Callable[[], Awaitable[str]]) -> tuple[str, str | None]:
    """The item's output, and the provider that served its last call (if it made one)."""
    with serving() as record:
        output = await policy.acall(attempt)
    return output, record.provider


def _success(
    ex: Execution,
    spec: StepSpec,
    idx: int,
    key: str | None,
    output: str,
    failed: list[Attempt],
    found: list[str],
    cached: bool,
    cache_as: str | None,
    base: dict[str, Any],
    provider: str | None = None,
) -> list[Write]:
    """The writes that record an item's success (durable before it is reported), with the
    provider that served its last call when it made one through regen's adapters."""
    if cached:
        ex.saved("saved_by_cache")  # served from the result cache: no call made
    at = _time.now()
    writes: list[Write] = [
        EndItem(
            spec.name,
            idx,
            ItemStatus.SUCCEEDED,
            at,
            key,
            None,
            output,
            encode([a.to_dict() for a in failed], "attempts"),
            None,
            cached,
        ),
        *(LinkArtifact(sha, spec.name, idx) for sha in found),
    ]
    if cache_as is not None:
        ttl = spec.cache.ttl if spec.cache is not None else None
        writes.append(
            PutCache(
                cache_as,
                f"{ex.flow.name}.{spec.name}",
                output,
                at,
                None if ttl is None else at + ttl,
            )
        )
    data = {**base, "cached": cached, "attempts": len(failed) + 1}
    if provider is not None:
        data["provider"] = provider
    writes.append(
        event_write(EventType.ITEM_SUCCEEDED, data, "item event")
        if len(output) > _SMALL_OUTPUT
        else _with_output(data, output)
    )
    return writes


def _with_output(data: dict[str, Any], output: str) -> Write:
    # The output is already compact JSON text: spliced in, not decoded and encoded again.
    text = encode(data, "item event")
    return AddEvent(EventType.ITEM_SUCCEEDED, f'{text[:-1]},"output":{output}}}', _time.now())


async def _commit(ex: Execution, writes: list[Write]) -> None:
    await ex.commit(writes)


def _progress(ex: Execution, spec: StepSpec, state: _State, *, force: bool = False) -> None:
    now = time.monotonic()
    if not force and now - state.last_progress < _PROGRESS_EVERY:
        return
    state.last_progress = now
    ex.event(
        EventType.PROGRESS,
        {
            "current": state.finished,
            "total": state.total,
            "succeeded": state.succeeded,
            "given_up": state.given_up,
        },
        step=spec.name,
    )


def _outcome(spec: StepSpec, state: _State, quota: int | None) -> Outcome:
    s, g = state.succeeded, state.given_up
    counts = {
        "total": state.seen,
        "succeeded": s,
        "given_up": g,
        "skipped": state.skipped,
        "quota": quota,
    }
    if quota is not None:
        status = (
            StepStatus.SUCCEEDED if s >= quota else (StepStatus.PARTIAL if s else StepStatus.FAILED)
        )
    else:
        status = StepStatus.SUCCEEDED if not g else (StepStatus.PARTIAL if s else StepStatus.FAILED)
    error = None
    if status is StepStatus.FAILED:
        what = f"quota {quota} not met" if quota is not None else "every item gave up"
        error = {
            "type": "MapFailed",
            "message": f"map step {spec.name!r}: {what} "
            f"({s} succeeded, {g} gave up of {state.seen})",
        }
    return Outcome(status, counts, encode(counts, "counts"), error, data=dict(counts))
