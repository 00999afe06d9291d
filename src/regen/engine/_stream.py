"""Running a streaming step: chunks go to the event log as they arrive; a failed attempt's
text is reset before the next attempt streams, and is never returned as a result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regen.engine._context import _UNSET, StepContext
from regen.engine._json import decode, encode
from regen.engine._outcome import Outcome, error_of
from regen.retry import Attempt, GiveUp
from regen.store import CountAttempt, EventType, StepStatus

if TYPE_CHECKING:
    from regen.engine._execute import Execution, StepState
    from regen.engine._flow import StepSpec


async def run_stream(ex: Execution, spec: StepSpec, rec: StepState) -> Outcome:
    """Stream ``spec`` under its policy; its result is the text of the attempt that ended."""
    key = ex.key(spec.name, rec.generation)
    number = rec.attempts  # attempts begun by earlier executions of this step
    if rec.status is StepStatus.RUNNING and number:
        # Taken over after a crash: the crashed attempt's text may be in the log.
        ex.event(EventType.STREAM_RESET, {"attempt": number, "reason": "resumed"}, step=spec.name)
    streamed = [False]

    async def attempt() -> tuple[str, Any]:
        nonlocal number
        number += 1
        streamed[0] = False
        await ex.commit([CountAttempt(rec.position, number)])  # numbering survives a crash
        ctx = StepContext(ex, spec.name, key)
        ctx.attempt = number
        parts: list[str] = []
        async for chunk in spec.fn(ctx):
            if not isinstance(chunk, str):
                raise TypeError(
                    f"streaming step {spec.name!r} yielded "
                    f"{type(chunk).__name__}; yield text (str) chunks"
                )
            parts.append(chunk)
            streamed[0] = True
            ex.event(EventType.CHUNK, {"text": chunk, "attempt": number}, step=spec.name)
            ex.check_cancel()
        return "".join(parts), ctx._output

    def reset(failed: Attempt) -> None:
        if streamed[0]:
            ex.event(
                EventType.STREAM_RESET,
                {"attempt": number, "reason": failed.message},
                step=spec.name,
            )

    policy = ex.policy_for(spec, key)
    hook = policy.on_retry

    def on_retry(failed: Attempt) -> None:
        if hook is not None:
            hook(failed)
        reset(failed)

    try:
        text, custom = await policy.replace(on_retry=on_retry, on_give_up=reset).acall(attempt)
        output = encode(
            text if custom is _UNSET else custom, f"streaming step {spec.name!r} output"
        )
    except (GiveUp, Exception) as exc:
        return Outcome(StepStatus.FAILED, error=error_of(exc))
    return Outcome(StepStatus.SUCCEEDED, decode(output), output, data={"attempts": number})
