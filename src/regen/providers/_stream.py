"""Retrying a stream: chunks flow to the consumer as they arrive, and a failed attempt is
announced with a :class:`StreamReset` so the consumer can discard what that attempt sent.

The contract, for any consumer of :func:`retry_stream` (and ``OpenAIProvider.stream``):

* :class:`StreamChunk` items carry text in order, each tagged with its attempt number;
* when an attempt fails and another will follow, a :class:`StreamReset` comes next: every
  chunk since the previous reset (or the start) belongs to a failed attempt and must be
  thrown away; the next attempt's chunks start from the beginning of the text;
* the iteration ends normally only after a complete stream (``[DONE]`` or a
  ``finish_reason``); if the call gives up it raises :class:`regen.retry.GiveUp`, and the
  chunks since the last reset are to be discarded too. Partial text is never a result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from regen.retry import Attempt, Kind, Policy, attempt_number


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of streamed text from attempt ``attempt``."""

    text: str
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class StreamReset:
    """Attempt ``attempt`` failed; discard the ``discarded`` characters it streamed."""

    attempt: int
    kind: Kind
    message: str
    discarded: int = 0
    wait: float | None = None


StreamEvent = StreamChunk | StreamReset

_END = object()


async def retry_stream(
    policy: Policy, attempt: Callable[[], AsyncIterator[str]]
) -> AsyncGenerator[StreamEvent, None]:
    """Stream ``attempt()``'s text under ``policy``, announcing failed attempts with resets.

    ``attempt`` is called once per attempt and must yield text only from a stream that is
    going well, raising when it is not (a cut, an error event, a missing end). Each attempt
    runs under the policy's per-attempt timeout; waits, hooks and logs are the retry core's.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()
    sent = [0]  # characters the running attempt has streamed

    async def one_attempt() -> None:
        number = attempt_number() or 1
        sent[0] = 0
        async for text in attempt():
            if text:
                sent[0] += len(text)
                queue.put_nowait(StreamChunk(text, number))

    user_hook = policy.on_retry

    def on_retry(failed: Attempt) -> Any:
        queue.put_nowait(
            StreamReset(failed.number, failed.kind, failed.message, sent[0], failed.wait)
        )
        return None if user_hook is None else user_hook(failed)

    task = asyncio.ensure_future(policy.replace(on_retry=on_retry).acall(one_attempt))
    task.add_done_callback(lambda _: queue.put_nowait(_END))
    try:
        while True:
            item = await queue.get()
            if item is _END:
                task.result()  # raises GiveUp (or the last error) when the call failed
                return
            yield item
    finally:
        # The consumer stopped early (break, cancellation) or the call is over: stop the
        # running attempt and retrieve its outcome so nothing is left dangling.
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled():
            task.exception()
