"""Fallback chains: when a provider is down, the attempt goes to the next one at once.

A chain is the provider a call was made on, then its ``fallback`` providers that offer the
same capability, in order. An attempt tries them in turn: a provider whose breaker is open
is skipped without a request, and one whose attempt failed with a kind the chain allows
(``fallback_on``, by default the outage kinds) hands over to the next. When every provider
refused because its breaker is open, the attempt fails :class:`Unavailable` with the
earliest reopening, which the policy waits for when its deadline allows.

Which provider served a call is on its result (``ChatResult.provider``,
``GeneratedImage.provider``, ``ImageResult.provider``) and, for code that only sees the
call from outside (the engine recording an item), in :func:`serving`'s record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

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
    head = chain[0]
    refused: list[Unavailable] = []
    failed: BaseException | None = None
    for index, link in enumerate(chain):
        last = index == len(chain) - 1
        try:
            if link.guard is None:
                result = await link.call()
            else:
                result = await link.guard.run(link.model, link.call)
        except Unavailable as exc:
            refused.append(exc)
            if last:
                break
            await _count_fallback(head, Kind.UNAVAILABLE)
            continue
        except Exception as exc:
            kind = classify(exc).kind
            if last or kind not in fallback_on:
                raise
            failed = exc
            await _count_fallback(head, kind)
            continue
        mark_served(link.name)
        return result
    if failed is not None:
        raise failed
    if len(refused) == 1:
        raise refused[0]
    soonest = min(refused, key=lambda exc: exc.retry_after)
    names = ", ".join(link.name for link in chain)
    raise Unavailable(
        f"every provider of the chain ({names}) has its circuit breaker open; the first "
        f"({soonest.provider}) lets calls through again in {soonest.retry_after:.1f} s",
        soonest.retry_after,
        provider=head.name,
    )


async def _count_fallback(head: Link[T], kind: Kind) -> None:
    if head.guard is not None:
        await head.guard.count("fallbacks", kind)
