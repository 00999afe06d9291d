"""Live progress of a run in the terminal, drawn from its event log."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from regen.engine import Engine, Event, EventType, Run, RunStatus, Step, StepStatus

_DONE = {
    "succeeded": "[green]✓[/green]",
    "partial": "[yellow]◐[/yellow]",
    "failed": "[red]✗[/red]",
    "skipped": "[dim]–[/dim]",
}


class RunProgress:
    """One progress row per step; map steps get a bar of finished items."""

    def __init__(self, console: Console, steps: list[Step]) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.rows: dict[str, TaskID] = {}
        self.kinds = {step.name: step.kind for step in steps}
        for step in steps:
            kept = step.status is StepStatus.SUCCEEDED
            label = (
                f"{_DONE['succeeded']} {step.name} ({step.kind}, kept)"
                if kept
                else f"{step.name} ({step.kind})"
            )
            row = self.progress.add_task(label, total=1 if kept else None, start=kept)
            if kept:
                self.progress.update(row, completed=1)  # marks the row finished
                self.progress.stop_task(row)
            self.rows[step.name] = row

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def handle(self, event: Event) -> None:
        """Update the rows for one event; print the ones a person should read."""
        data, kind = event.data, event.type
        step = data.get("step")
        row = self.rows.get(step) if isinstance(step, str) else None
        step = step if isinstance(step, str) else ""
        if kind == EventType.STEP_STARTED and row is not None:
            self.progress.start_task(row)
        elif kind.startswith("step.") and row is not None:
            status = kind.removeprefix("step.")
            mark = _DONE.get(status, status)
            self.progress.update(row, description=f"{mark} {step} ({self.kinds[step]})")
            if "total" in data:
                done = sum(data.get(k, 0) for k in ("succeeded", "given_up", "skipped"))
                self.progress.update(row, total=data["total"], completed=done)
            elif self.progress.tasks[row].total is None:
                self.progress.update(row, total=1, completed=1)
            self.progress.stop_task(row)
        elif kind == EventType.PROGRESS and row is not None and "total" in data:
            self.progress.update(row, total=data.get("total"), completed=data.get("current", 0))
        elif kind == EventType.ATTEMPT_FAILED:
            self._line(
                event,
                f"[yellow]attempt {data.get('attempt', '?')} failed[/yellow]: "
                f"{data.get('kind')} — {data.get('message', '')}"
                + (f"; retrying in {data['wait']:g}s" if data.get("wait") else ""),
            )
        elif kind == EventType.ITEM_GIVEN_UP:
            errors = data.get("errors") or []
            self._line(
                event,
                f"[red]gave up[/red] after {data.get('attempts', len(errors))} "
                f"attempts: {errors[-1] if errors else ''}; the batch goes on",
            )
        elif kind == EventType.STREAM_RESET:
            self._line(event, f"[yellow]stream reset[/yellow]: attempt {data.get('attempt')}")
        elif kind == EventType.LOG:
            self._line(event, f"{data.get('level', 'info')}: {data.get('message', '')}")
        elif kind.startswith("run.") and kind != EventType.RUN_STARTED:
            status = kind.removeprefix("run.")
            self.console.print(f"run {event.run_id}: {_DONE.get(status, '')} {status}")

    def _line(self, event: Event, text: str) -> None:
        where = event.data.get("step", "")
        item = event.data.get("item")
        label = f"{where}[{item}]" if item is not None else where
        self.console.print(f"  [dim]{label}[/dim] {text}", highlight=False)


async def _last_seq(engine: Engine, run_id: str) -> int:
    """The newest event's seq, so a retried run's progress starts from what is new."""
    last = 0
    while page := await engine.read_events(run_id, last, 5000):
        last = page[-1].seq
    return last


async def run_with_progress(
    engine: Engine, run_id: str, console: Console, resources: Any = None
) -> Run:
    """Execute a queued run in this event loop while drawing its progress (``resources``:
    the steps' ``ctx.resources`` instead of the flow's own). A run another process is
    executing is followed to its end instead."""
    steps = (await engine.detail(run_id)).steps
    start_after = await _last_seq(engine, run_id)
    with RunProgress(console, steps) as progress:

        async def show() -> None:
            async for event in engine.events(run_id, after=start_after, follow=True, poll=0.1):
                progress.handle(event)

        watcher = asyncio.create_task(show())
        try:
            run = await engine.execute(run_id, resources=resources)
            if not run.status.finished or run.retry_at is not None:
                run = await engine.wait(run_id, poll=0.2)  # executing elsewhere
            await watcher  # the log is read to the run's end
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return run


def execute_with_progress(engine: Engine, run_id: str, console: Console | None = None) -> Run:
    """Execute a queued run here with live progress; Ctrl-C leaves it resumable."""
    console = console or Console()

    async def execute() -> Run:
        run = await run_with_progress(engine, run_id, console)
        await summary(console, engine, run)
        return run

    try:
        return asyncio.run(execute())
    except KeyboardInterrupt:
        console.print(
            f"\n[yellow]interrupted[/yellow]: run {run_id} keeps its checkpoints.\n"
            f"resume it with: [bold]regen retry {run_id}[/bold]"
        )
        raise SystemExit(130) from None


async def summary(console: Console, engine: Engine, run: Run) -> None:
    """Where the run ended, and what to do next."""
    detail = await engine.detail(run.id)
    for name, counts in detail.items.items():
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        console.print(f"  {name}: {shown}")
    if run.status in (RunStatus.FAILED, RunStatus.PARTIAL):
        console.print(
            f"retry what failed: [bold]regen retry {run.id}[/bold]   details: regen show {run.id}",
            soft_wrap=True,  # a command stays on one line, to copy
        )
    console.print(f"artifacts: {engine.home / 'artifacts'}")
