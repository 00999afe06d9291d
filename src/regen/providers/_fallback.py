"""Fallback chains: when a provider is down, the attempt goes to the next one at once.

A chain is the provider a call was made on, then its ``fallback`` providers that offer the
same capability, in order. An attempt tries them in turn: a provider whose breaker is open
is skipped without a request, and one whose attempt failed with a kind the chain allows
(``fallback_on``, by default the outage kinds) hands over to the next. When every provider
refused because its breaker is open, the attempt fails :class:`Unavailable` with the
earliest reopening, which the policy waits for when its deadline allows.

A stream (:func:`run_stream_chain`) is handed over the same way, but only until its first
item reaches the caller: after that its text cannot change provider, and a failure is
raised for the caller's retry to deal with.

Which provider served a call is on its result (``ChatResult.provider``,
``GeneratedImage.provider``, ``ImageResult.provider``) and, for code that only sees the
call from outside (the engine recording an item, a streamed chat), in :func:`serving`'s
record; a stream is recorded when it ends whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from regen.providers._errors import Unavailable
from regen.retry import Kind, classify

if TYPE_CHECKING:
    from regen.providers._guard import Guard

T = TypeVar("T")


@dataclass(slots=True)
class Served:
    """The providers that served calls inside a :func:`serving` block, in order."""

    providers: list[str] = field(default_factory=list)

    @property
    def provider(self) -> str | None:
        """The provider that served the last call, or ``None`` when none was served."""
        return self.providers[-1] if self.providers else None


_served: ContextVar[Served | None] = ContextVar("regen_providers_served", default=None)


@contextlib.contextmanager
def serving() -> Iterator[Served]:
    """Record which providers serve the calls made inside the block (and in the tasks it
    starts): ``with serving() as served: …; served.provider``."""
    record = Served()
    token = _served.set(record)
    try:
        yield record
    finally:
        _served.reset(token)


def mark_served(provider: str) -> None:
    """Note that ``provider`` served a call, for the enclosing :func:`serving` block."""
    record = _served.get()
    if record is not None:
        record.providers.append(provider)


@dataclass(frozen=True, slots=True)
class Link(Generic[T]):
    """One provider of a chain: its name, its guard (if any), the model its breaker is
    keyed by, and the call that makes one attempt on it."""

    name: str
    guard: Guard | None
    model: str | None
    call: Callable[[], Awaitable[T]]


async def run_chain(
    links: Sequence[Link[T]], *, fallback_on: frozenset[Kind], allowed: bool = True
) -> T:
    """One attempt along the chain; the first provider's counters record fallbacks.

    ``allowed=False`` (a non-idempotent call without an idempotency key) uses the first
    provider only.
    """
    chain = links if allowed else links[:1]
    tally = _Tally(chain[0], fallback_on)
    for index, link in enumerate(chain):
        try:
            if link.guard is None:
                result = await link.call()
            else:
                result = await link.guard.run(link.model, link.call)
        except Exception as exc:
            await tally.hand_over(exc, last=index == len(chain) - 1)
            continue
        mark_served(link.name)
        return result
    raise tally.outcome([link.name for link in chain])


@dataclass(frozen=True, slots=True)
class StreamLink(Generic[T]):
    """One provider of a streamed call's chain: as :class:`Link`, with ``open`` starting
    the stream on it."""

    name: str
    guard: Guard | None
    model: str | None
    open: Callable[[], AsyncIterator[T]]


async def run_stream_chain(
    links: Sequence[StreamLink[T]], *, fallback_on: frozenset[Kind], allowed: bool = True
) -> AsyncGenerator[T, None]:
    """One streamed attempt along the chain: a provider that is refused or fails before
    its first item hands the stream to the next, as :func:`run_chain` does; once an item
    has been yielded the stream stays on its provider, and a failure is raised.

    Each provider's stream runs as one attempt of its guard (a failure before the first
    item counts against it, a stream that ends counts as an answer).
    """
    chain = links if allowed else links[:1]
    tally = _Tally(chain[0], fallback_on)
    for index, link in enumerate(chain):
        stream = _guarded(link)
        async with contextlib.aclosing(stream):
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                mark_served(link.name)
                return
            except Exception as exc:
                await tally.hand_over(exc, last=index == len(chain) - 1)
                continue
            yield first
            async for item in stream:
                yield item
        mark_served(link.name)
        return
    raise tally.outcome([link.name for link in chain])


async def _guarded(link: StreamLink[T]) -> AsyncGenerator[T, None]:
    """``link``'s stream as one attempt of its guard (closed at once when left early)."""
    async with contextlib.AsyncExitStack() as stack:
        if link.guard is not None:
            await stack.enter_async_context(link.guard.attempt(link.model))
        stream = link.open()
        if isinstance(stream, AsyncGenerator):
            stack.push_async_callback(stream.aclose)
        async for item in stream:
            yield item


class _Tally:
    """What the providers tried so far left: refusals by open breakers, the last failure."""

    def __init__(self, head: Link[Any] | StreamLink[Any], fallback_on: frozenset[Kind]) -> None:
        self.head = head
        self.fallback_on = fallback_on
        self.refused: list[Unavailable] = []
        self.failed: Exception | None = None

    async def hand_over(self, exc: Exception, *, last: bool) -> None:
        """Note ``exc``, which a provider's attempt raised; raise it again when the next
        provider may not take the attempt (it is a kind the chain keeps, or none is left)."""
        if isinstance(exc, Unavailable):
            self.refused.append(exc)
            if not last:
                await self._count(Kind.UNAVAILABLE)
            return
        kind = classify(exc).kind
        if last or kind not in self.fallback_on:
            raise exc
        self.failed = exc
        await self._count(kind)

    def outcome(self, names: list[str]) -> Exception:
        """What to raise when every provider refused or failed: the last failure, else the
        refusal that ends soonest."""
        if self.failed is not None:
            return self.failed
        if len(self.refused) == 1:
            return self.refused[0]
        soonest = min(self.refused, key=lambda exc: exc.retry_after)
        return Unavailable(
            f"every provider of the chain ({', '.join(names)}) has its circuit breaker open; "
            f"the first ({soonest.provider}) lets calls through again in "
            f"{soonest.retry_after:.1f} s",
            soonest.retry_after,
            provider=self.head.name,
        )

    async def _count(self, kind: Kind) -> None:
        if self.head.guard is not None:
            await self.head.guard.count("fallbacks", kind)
