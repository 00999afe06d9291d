"""Why a run ended as it did, and what to type next: printed when ``regen run``, ``regen
retry`` or ``regen demo`` ends failed, partial or cancelled, and by ``regen show``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.markup import escape

from regen.cli._common import when
from regen.engine import Engine, EventType, Item, Run, RunDetail, RunStatus, format_error

#: Given-up items whose errors are printed.
FIRST_ERRORS = 3

#: Failure kinds another attempt would not mend, with what to fix first.
FIX_FIRST = {
    "config": "fix the configuration named above (an environment variable or a setting)",
    "auth": "check the provider's API key and its permissions",
    "bad_request": "fix what the step sends (its params, prompt or model)",
    "content_policy": "change the input the provider refused (the prompt or the image)",
    "quota_exhausted": "top up the provider account's quota, or use another key or provider",
    "unknown": "a bug in the step's code (traceback above): fix it",
    "crashed": "find what kills the run's process (memory, a native crash, a signal)",
}


def retries_used(run: Run) -> str:
    """``1 of 3 automatic retries used``."""
    return f"{run.auto_retries} of {run.max_retries} automatic retries used"


async def given_up(engine: Engine, detail: RunDetail) -> dict[str, tuple[int, list[Item]]]:
    """Per map step with give-ups: how many, and the first few."""
    found: dict[str, tuple[int, list[Item]]] = {}
    for step, counts in detail.items.items():
        if counts.get("given_up"):
            first = await engine.items(detail.run.id, step, status="given_up", limit=FIRST_ERRORS)
            found[step] = (counts["given_up"], first)
    return found


def _item_kind(item: Item) -> str | None:
    last = item.attempts[-1] if item.attempts else {}
    kind = last.get("kind") if isinstance(last, dict) else None
    return str(kind) if kind else None


async def _item_bug(engine: Engine, run_id: str, step: str) -> dict[str, Any] | None:
    """The error record (with its traceback) of the first item of ``step`` given up on a
    bug, read from the event log (the item record keeps only its attempts)."""
    after, pages = 0, 0
    while pages < 20 and (batch := await engine.read_events(run_id, after, 500)):
        for event in batch:
            error = event.data.get("error")
            if (
                event.type == EventType.ITEM_GIVEN_UP
                and event.data.get("step") == step
                and isinstance(error, dict)
                and error.get("kind") == "unknown"
            ):
                return error
        after, pages = batch[-1].seq, pages + 1
    return None


async def explain(console: Console, engine: Engine, run: Run, *, hint: bool = True) -> None:
    """Print why ``run`` ended failed, partial or cancelled, and (``hint``) what to type next."""
    if run.status not in (RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.CANCELLED):
        return
    detail = await engine.detail(run.id)
    error = dict(run.error or {})
    rid = run.id
    if run.status is RunStatus.CANCELLED:
        again = f": [bold]regen run {escape(run.flow_ref)}[/bold]" if run.flow_ref else ""
        console.print(
            f"[magenta]cancelled[/magenta]: run {rid} stopped on request; a cancelled run "
            f"is not retried: start a new one{again}",
            soft_wrap=True,
            highlight=False,
        )
        return
    step = error.get("step") or detail.failed_step
    kind = error.get("kind")
    gave_up = await given_up(engine, detail)
    if run.status is RunStatus.FAILED:
        where = f" at step {step!r}" if step else ""
        if error.get("where") == "resources":
            where = " before its first step (opening the flow's resources)"
        label = f"{kind}: " if kind else ""
        console.print(
            f"[red]failed[/red]{where}: {escape(label)}{escape(str(error.get('message', '')))}",
            soft_wrap=True,
            highlight=False,
        )
        if kind == "unknown" and error.get("frames"):
            console.print(escape(format_error(error)), highlight=False, soft_wrap=True)
    for name, (count, first) in gave_up.items():
        items = "1 item" if count == 1 else f"{count} items"
        first_of = "" if count == 1 else "; the first:"
        console.print(f"[red]{items} of {name!r} gave up[/red]{first_of}", highlight=False)
        for item in first:
            last = item.errors[-1] if item.errors else "-"
            console.print(f"  [{item.idx}] {escape(last)}", highlight=False, soft_wrap=True)
        kinds = Counter(k for k in map(_item_kind, first) if k)
        if kind is None and kinds:
            kind = kinds.most_common(1)[0][0]
            if kind == "unknown":
                bug = await _item_bug(engine, rid, name)
                if bug is not None:
                    console.print(escape(format_error(bug)), highlight=False, soft_wrap=True)
    if hint:
        for line in next_steps(run, detail, kind, error):
            console.print(line, soft_wrap=True, highlight=False)  # commands stay on one line


def next_steps(run: Run, detail: RunDetail, kind: str | None, error: dict[str, Any]) -> list[str]:
    """What to type next for a failed or partial run, most useful first."""
    rid = run.id
    retry = f"[bold]regen retry {rid}[/bold]"
    if error.get("type") == "FlowChanged":
        return ["the flow's steps changed since the run began: start a new run"]
    if run.status is RunStatus.FAILED and run.retry_at is not None:
        return [
            f"automatic retry {run.auto_retries + 1}/{run.max_retries} at "
            f"{when(run.retry_at)} (a running `regen worker` carries it out); "
            f"retry now: {retry}"
        ]
    if not detail.resumable:
        return [f"its checkpoints have expired: start a new run; details: regen show {rid}"]
    if kind == "unavailable":
        return [
            "the provider was down (its circuit breaker refused calls until it recovers): "
            f"{retry} once it is back, or declare a fallback provider "
            '(fallback = ["NAME"] in its [providers.NAME] table)   details: '
            f"regen show {rid}"
        ]
    fix = FIX_FIRST.get(kind or "")
    if fix is not None:
        step = error.get("step") or detail.failed_step
        lines = [f"a retry alone would fail again: {fix}, then {retry}"]
        if kind in ("bad_request", "content_policy") and step:
            lines.append(
                f"  (if an earlier step made that input, redo it too: "
                f"[bold]regen retry {rid} --from STEP[/bold])"
            )
        return lines
    if run.status is RunStatus.PARTIAL:
        return [f"retry the items that gave up: {retry}   details: regen show {rid}"]
    step = detail.failed_step
    redo = f" (or --from {step} to redo that step from scratch)" if step else ""
    return [f"retry from the failed step: {retry}{redo}   details: regen show {rid}"]
