"""Running a map step's items in this process: claimed from the store in batches, at most
the step's ``concurrency`` attempts at once, each item's end recorded under its claim.

The run's own execution and a worker helping it run items alike: each claims what it has
room for (the store hands an item to one claimant only, and never more than the quota may
still need), runs it, and records its end fenced by the claim's token, so an item another
worker took over after this one's lease lapsed is not recorded twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regen.engine import _faults, _time
from regen.engine._context import StepContext, event_text, event_write
from regen.engine._json import encode
from regen.engine._outcome import cache_key, error_of
from regen.engine._slots import Slots
from regen.providers import serving
from regen.retry import Attempt, GiveUp
from regen.store import (
    ClaimedItems,
    EndItem,
    EventType,
    Item,
    ItemLease,
    ItemStatus,
    LinkArtifact,
    PutCache,
    Write,
)

if TYPE_CHECKING:
    from regen.engine._execute import Execution
    from regen.engine._flow import StepSpec

_SMALL_OUTPUT = 4096  # outputs up to this size are repeated in item.succeeded events
_PROGRESS_EVERY = 0.25  # seconds of real time between progress events


@dataclass(slots=True)
class _State:
    alive: int = 0
    error: BaseException | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self) -> None:
        self.changed.clear()
        await self.changed.wait()


class ItemRunner:
    """Claims and runs items of one map step of ``ex``'s run.

    ``generation``/``refresh``: the step's, from its record (idempotency keys, cache use).
    ``progress``: called after items end (the run's own execution reports progress).
    ``may_claim``: whether to claim more now (a worker's helping session stops claiming
    while the worker's runs need its room).
    """

    def __init__(
        self,
        ex: Execution,
        spec: StepSpec,
        generation: int,
        refresh: bool,
        *,
        token: str | None = None,
        quota: int | None = None,
        progress: Callable[[], Any] | None = None,
        may_claim: Callable[[], bool] | None = None,
    ) -> None:
        self.ex = ex
        self.spec = spec
        self.generation = generation
        self.refresh = refresh
        self.token = token or uuid.uuid4().hex
        self.slots = Slots(spec.concurrency)
        # Up to twice the concurrency claimed at once: an item waiting to retry holds no
        # slot, and one waiting for a slot starts the moment one frees.
        self.window = 2 * spec.concurrency
        self.batch = max(1, spec.concurrency // 2)
        self.state = _State()
        self.tasks: set[asyncio.Task[None]] = set()
        self.quota = quota
        self._progress = progress
        self._may_claim = may_claim
        self._short = False  # the last claim got fewer items than it asked for
        self._running = False
        self._adopted: list[tuple[Item, str]] = []
        self._held: set[str] = set()
        self._in_hand: set[int] = set()  # the items running in this session

    # --- the claiming loop ----------------------------------------------------------------------

    def adopt(self, claimed: ClaimedItems) -> None:
        """Run items claimed for this step by someone else in this process (a worker that
        found the step again), each under its own claim."""
        if self._running:
            self._hold(claimed.lease.token)
            for item in claimed.items:
                self._start(item, claimed.lease.token)
        else:
            self._adopted.extend((item, claimed.lease.token) for item in claimed.items)
        self.state.changed.set()

    async def run(self, *, until_done: bool) -> None:
        """Run items until none is left to claim (``until_done``: until every item of the
        step is final, waiting for those other workers run)."""
        state = self.state
        ask = True
        self._running = True
        self._hold(self.token)
        for item, token in self._adopted:
            self._hold(token)
            self._start(item, token)
        self._adopted.clear()
        try:
            while True:
                if state.error is not None:
                    raise state.error
                self.ex.check_cancel()
                room = self.window - state.alive
                if (
                    ask
                    and room > 0
                    and (room >= self.batch or self._short or not state.alive)
                    and (self._may_claim is None or self._may_claim())
                ):
                    got = await self._claim(room)
                    self._short, ask = got < room, False
                    continue
                if state.alive:
                    await state.wait()
                    ask = True
                    await self._report()
                    continue
                if not until_done or await self._settled():
                    return
                await self._wait_for_others()
                ask = True
                await self._report()
        except BaseException as exc:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if isinstance(exc, asyncio.CancelledError):
                await self._give_back()
            raise
        finally:
            heartbeat = self.ex.engine._heartbeat
            for token in self._held:
                heartbeat.drop_items(token)
            self._held.clear()

    async def _give_back(self) -> None:
        """This process stops (a worker shutting down): the items it claimed and did not
        finish go back to pending, for another worker to claim now rather than once their
        leases lapse. Should that fail, they lapse as they would after a crash."""
        ex = self.ex
        with contextlib.suppress(Exception):
            await ex.outbox.flush()  # the item.started events queued so far, logged first
        for token in self._held:
            lease = ItemLease(ex.run_id, self.spec.name, token, ex.engine.owner)
            with contextlib.suppress(Exception):
                await ex.store.release_items(lease)

    def _hold(self, token: str) -> None:
        """Have the heartbeat renew the leases of the items claimed under ``token``."""
        if token not in self._held:
            self._held.add(token)
            self.ex.engine._heartbeat.hold_items(token)

    async def _claim(self, room: int) -> int:
        ex = self.ex
        claimed = await ex.store.claim_items(
            ex.engine.owner,
            self.token,
            ex.engine.settings.lease_ttl,
            _time.now(),
            limit=room,
            run_id=ex.run_id,
            step=self.spec.name,
        )
        if claimed is None:
            return 0
        for item in claimed.items:
            self._start(item, self.token)
        return len(claimed.items)

    async def _settled(self) -> bool:
        """Whether every item of the step is final, or the quota is met."""
        counts = await self.ex.store.count_items(self.ex.run_id, self.spec.name)
        if self.quota is not None and counts.get(ItemStatus.SUCCEEDED, 0) >= self.quota:
            return True
        return not counts.get(ItemStatus.RUNNING) and not counts.get(ItemStatus.PENDING)

    async def _wait_for_others(self) -> None:
        """Until another worker writes to the run, or a poll interval passes (an item whose
        worker died is claimed once its lease expires)."""
        ex = self.ex
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def listener(touched: str) -> None:
            if touched == ex.run_id:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(changed.set)

        remove = ex.store.add_listener(listener)
        try:
            poll = min(1.0, max(0.05, ex.engine.settings.lease_ttl / 10))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), poll)
        finally:
            remove()

    async def _report(self) -> None:
        if self._progress is not None:
            await self._progress()

    def _start(self, item: Item, token: str) -> None:
        if item.idx in self._in_hand:
            # Already running here: a claim whose answer was lost is read back as every
            # item its token holds, those of this session's earlier claims among them.
            return
        self._in_hand.add(item.idx)
        self.state.alive += 1
        task = asyncio.create_task(self._item(item, token))
        task.add_done_callback(lambda _: self._in_hand.discard(item.idx))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        state = self.state
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and state.error is None:
            state.error = task.exception()
        state.changed.set()

    # --- one item -------------------------------------------------------------------------------

    async def _item(self, row: Item, token: str) -> None:
        ex, spec, slots = self.ex, self.spec, self.slots
        idx, key, item = row.idx, row.key, row.input
        ikey = ex.key(spec.name, self.generation, key or str(idx))
        ctx = StepContext(ex, spec.name, ikey, item, idx, key)
        failed: list[Attempt] = []
        base: dict[str, Any] = {"step": spec.name, "item": idx, "key": key}
        # The item starts when its first attempt has a slot: ``item.started`` (queued,
        # committed with the next writes) then means it runs, not merely that it is claimed.
        held = False
        try:
            await slots.acquire(retry=False)
            held = True
            ex.outbox.add([event_write(EventType.ITEM_STARTED, base, "item event")])
            output, cached, cached_key = None, False, None
            if spec.cache is not None:
                inputs = spec.cache.key(ctx, item) if spec.cache.key is not None else item
                cached_key = cache_key(ex.flow.name, spec.name, spec.version, inputs)
                if not self.refresh:
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

                policy = ex.policy_for(spec, ikey, index=idx, failed=failed)
                with serving() as record:  # which provider served the item's last call
                    output = await policy.acall(attempt)
                served = record.provider
            _faults.point("after_item_work")
            await ex.commit(
                self._success(
                    idx, key, token, output, failed, found, cached, cached_key, base, served
                )
            )
        except GiveUp as exc:
            await ex.commit([self._given_up(exc, idx, key, token, base)])
        finally:
            if held:
                slots.release()
            self.state.alive -= 1
            self.state.changed.set()

    def _given_up(
        self, exc: GiveUp, idx: int, key: str | None, token: str, base: dict[str, Any]
    ) -> EndItem:
        """The write that records an item's give-up, with its attempts and last errors."""
        attempts = [a.to_dict() for a in exc.attempts]
        data = {
            **base,
            "attempts": len(attempts),
            "kind": str(exc.kind),
            "errors": exc.errors,
            "error": error_of(exc),
        }
        return EndItem(
            self.spec.name,
            idx,
            ItemStatus.GIVEN_UP,
            _time.now(),
            key,
            None,
            None,
            encode(attempts, "attempts"),
            encode(exc.errors, "errors"),
            token=token,
            event=event_text(data, "item event"),
        )

    def _success(
        self,
        idx: int,
        key: str | None,
        token: str,
        output: str,
        failed: list[Attempt],
        found: list[str],
        cached: bool,
        cached_key: str | None,
        base: dict[str, Any],
        provider: str | None,
    ) -> list[Write]:
        """The writes that record an item's success (durable before it is reported), with the
        provider that served its last call when it made one through regen's adapters."""
        spec, at = self.spec, _time.now()
        if cached:
            self.ex.saved("saved_by_cache")  # served from the result cache: no call made
        data = {**base, "cached": cached, "attempts": len(failed) + 1}
        if provider is not None:
            data["provider"] = provider
        text = event_text(data, "item event")
        if len(output) <= _SMALL_OUTPUT:
            # The output is already compact JSON text: spliced in, not decoded and encoded.
            text = f'{text[:-1]},"output":{output}}}'
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
                token=token,
                event=text,
                provider=provider,
            ),
            *(LinkArtifact(sha, spec.name, idx) for sha in found),
        ]
        if cached_key is not None and not cached:
            ttl = spec.cache.ttl if spec.cache is not None else None
            writes.append(
                PutCache(
                    cached_key,
                    f"{self.ex.flow.name}.{spec.name}",
                    output,
                    at,
                    None if ttl is None else at + ttl,
                )
            )
        return writes


def progress_due(last: float) -> bool:
    """Whether a progress event is due, the last one having been sent at ``last``."""
    return time.monotonic() - last >= _PROGRESS_EVERY
