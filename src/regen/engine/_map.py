"""Running a map step: one function over many items, recorded first, then run by this
process and by any worker with room (see ``_items``), each item checkpointed once.

A step's ``concurrency`` bounds the items each process runs at once: the run's own
execution, and every worker that helps it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from regen.engine import _time
from regen.engine._context import StepContext
from regen.engine._errors import FlowError
from regen.engine._items import ItemRunner, progress_due
from regen.engine._json import encode
from regen.engine._outcome import Outcome
from regen.foundation import is_whole
from regen.store import (
    AddItems,
    EventType,
    ItemStatus,
    OpenItems,
    SkipItems,
    StepStatus,
    Write,
)

if TYPE_CHECKING:
    from regen.engine._execute import Execution, StepState
    from regen.engine._flow import StepSpec

_PAGE = 1000  # items recorded per commit
_FINAL = (ItemStatus.SUCCEEDED, ItemStatus.GIVEN_UP, ItemStatus.SKIPPED)


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


def _quota(ex: Execution, spec: StepSpec, ctx: StepContext) -> int | None:
    quota = spec.quota
    if quota is None:
        return None
    value = (
        ex.params[quota[7:]]
        if isinstance(quota, str)
        else (quota(ctx) if callable(quota) else quota)
    )
    if not is_whole(value) or value < 1:
        raise FlowError(f"map step {spec.name!r}: quota {value!r} is not a whole number ≥ 1")
    return value


async def run_map(ex: Execution, spec: StepSpec, rec: StepState) -> Outcome:
    """Record the step's items, then run them here, and in any worker with room, until each
    has ended (an item that gives up is recorded and the step goes on)."""
    ctx = StepContext(ex, spec.name, ex.key(spec.name, rec.generation))
    quota = _quota(ex, spec, ctx)
    await _record(ex, spec, ctx, rec.position, quota)
    kept = (await ex.store.count_items(ex.run_id, spec.name)).get(ItemStatus.SUCCEEDED, 0)
    ex.saved("saved_by_checkpoint", kept)  # succeeded in an earlier execution: not run again
    reporter = _Progress(ex, spec.name)
    runner = ItemRunner(ex, spec, rec.generation, rec.refresh, quota=quota, progress=reporter.maybe)
    await runner.run(until_done=True)
    counts = await ex.store.count_items(ex.run_id, spec.name)
    succeeded = counts.get(ItemStatus.SUCCEEDED, 0)
    writes: list[Write] = []
    open_ = counts.get(ItemStatus.PENDING, 0) + counts.get(ItemStatus.RUNNING, 0)
    if quota is not None and succeeded >= quota and open_:
        # The quota is met: the candidates never started are skipped.
        writes.append(SkipItems(spec.name, _time.now()))
        counts[ItemStatus.SKIPPED] = counts.get(ItemStatus.SKIPPED, 0) + open_
        counts.pop(ItemStatus.PENDING, None)
        counts.pop(ItemStatus.RUNNING, None)
    reporter.send(counts)
    return _outcome(spec, counts, quota, writes)


async def _record(
    ex: Execution, spec: StepSpec, ctx: StepContext, position: int, quota: int | None
) -> None:
    """Write the step's items (inputs and keys) as pending, page by page (a generator's
    items are never all held), then open them to every worker. Items an earlier execution
    recorded are kept as they are: succeeded ones are not run again."""
    values = await _values(ex, spec, ctx)
    rows: list[tuple[int, str | None, str]] = []
    total = 0
    async for item in _iterate(values, spec.name):
        rows.append(
            (total, _item_key(spec, item), encode(item, f"map step {spec.name!r}: item {total}"))
        )
        total += 1
        if len(rows) >= _PAGE:
            ex.check_cancel()
            await ex.commit([AddItems(spec.name, tuple(rows))])
            rows = []
    await ex.commit([AddItems(spec.name, tuple(rows)), OpenItems(position, quota, total)])


def _item_key(spec: StepSpec, item: Any) -> str | None:
    return None if spec.key is None else str(spec.key(item))


class _Progress:
    """``progress`` events of a map step, from the store's counts (items any worker ran),
    at most every quarter second."""

    def __init__(self, ex: Execution, step: str) -> None:
        self.ex = ex
        self.step = step
        self.last = 0.0

    async def maybe(self) -> None:
        if progress_due(self.last):
            self.send(await self.ex.store.count_items(self.ex.run_id, self.step))

    def send(self, counts: dict[ItemStatus, int]) -> None:
        self.last = time.monotonic()
        total = sum(counts.values())
        done = sum(counts.get(s, 0) for s in _FINAL)
        self.ex.event(
            EventType.PROGRESS,
            {
                "current": done,
                "total": total,
                "succeeded": counts.get(ItemStatus.SUCCEEDED, 0),
                "given_up": counts.get(ItemStatus.GIVEN_UP, 0),
            },
            step=self.step,
        )


def _outcome(
    spec: StepSpec, counts: dict[ItemStatus, int], quota: int | None, writes: list[Write]
) -> Outcome:
    s = counts.get(ItemStatus.SUCCEEDED, 0)
    g = counts.get(ItemStatus.GIVEN_UP, 0)
    seen = sum(counts.values())
    summary = {
        "total": seen,
        "succeeded": s,
        "given_up": g,
        "skipped": counts.get(ItemStatus.SKIPPED, 0),
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
            "message": f"map step {spec.name!r}: {what} ({s} succeeded, {g} gave up of {seen})",
        }
    return Outcome(
        status, summary, encode(summary, "counts"), error, writes=writes, data=dict(summary)
    )
