"""Live progress of a run in the terminal, drawn from its event log."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from regen.cli._common import console as masked_console
from regen.cli._common import when
from regen.cli._explain import explain
from regen.engine import Engine, Event, EventType, Run, RunStatus, Step, StepStatus

_DONE = {
    "succeeded": "[green]✓[/green]",
    "partial": "[yellow]◐[/yellow]",
    "failed": "[red]✗[/red]",
    "skipped": "[dim]–[/dim]",
}


class _Spinner(SpinnerColumn):
    """A spinner only on a step that is running: none on one not started or closed."""

    def render(self, task: Task) -> Any:
        if task.fields.get("closed") or not task.started:
            return Text(" ")
        return super().render(task)


class RunProgress:
    """One progress row per step; map steps get a bar of finished items. An automatic
    retry's wait gets a row of its own with a countdown."""

    def __init__(self, console: Console, steps: list[Step], max_retries: int = 0) -> None:
        self.console = console
        self.max_retries = max_retries
        self.progress = Progress(
            _Spinner(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.rows: dict[str, TaskID] = {}
        self.closed: set[str] = set()
        self.kinds = {step.name: step.kind for step in steps}
        #: The row of an automatic retry's wait, and when that retry is due.
        self.waiting: tuple[TaskID, float, str] | None = None
        for step in steps:
            kept = step.status is StepStatus.SUCCEEDED
            label = (
                f"{_DONE['succeeded']} {step.name} ({step.kind}, kept)"
                if kept
                else f"{step.name} ({step.kind})"
            )
            row = self.progress.add_task(label, total=1 if kept else None, start=kept)
            if kept:
                self.progress.update(row, completed=1, closed=True)  # marks the row finished
                self.progress.stop_task(row)
                self.closed.add(step.name)
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
            self._end_wait()
            # A retried step starts afresh: its row loses the mark of the last attempt.
            self.closed.discard(step)
            self.progress.reset(row, start=True, total=None, completed=0, closed=False)
            self.progress.update(row, description=f"{step} ({self.kinds[step]})")
        elif kind.startswith("step.") and row is not None:
            status = kind.removeprefix("step.")
            mark = _DONE.get(status, status)
            self.closed.add(step)
            self.progress.update(
                row, description=f"{mark} {step} ({self.kinds[step]})", closed=True
            )
            if "total" in data:
                done = sum(data.get(k, 0) for k in ("succeeded", "given_up", "skipped"))
                self.progress.update(row, total=data["total"], completed=done)
            else:  # a plain step's row: full, whatever its last attempt left
                done = self.progress.tasks[row].total or 1
                self.progress.update(row, total=done, completed=done)
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
                f"attempts: {escape(str(errors[-1])) if errors else ''}; the batch goes on",
            )
        elif kind == EventType.STREAM_RESET:
            self._line(event, f"[yellow]stream reset[/yellow]: attempt {data.get('attempt')}")
        elif kind == EventType.LOG:
            self._line(
                event, f"{data.get('level', 'info')}: {escape(str(data.get('message', '')))}"
            )
        elif kind == EventType.RUN_QUEUED:
            self._end_wait()
        elif kind.startswith("run.") and kind != EventType.RUN_STARTED:
            status = kind.removeprefix("run.")
            retry_at = data.get("retry_at")
            waits = isinstance(retry_at, (int, float)) and kind == EventType.RUN_FAILED
            self.console.print(
                f"run {event.run_id}: {_DONE.get(status, '')} {status}"
                + (" (an automatic retry follows)" if waits else ""),
                highlight=False,
            )
            if isinstance(retry_at, (int, float)) and waits:
                self._wait_for(float(retry_at), data.get("retry"))

    def _wait_for(self, retry_at: float, number: Any) -> None:
        """An automatic retry is due at ``retry_at``: say when, and count down to it."""
        label = f"retry {number}/{self.max_retries}" if number else "retry"
        seconds = max(0.0, retry_at - time.time())
        self.console.print(
            f"[yellow]{label}[/yellow] at {when(retry_at).split()[-1]} (in {seconds:.0f} s)",
            highlight=False,
        )
        self._end_wait()
        row = self.progress.add_task(_countdown(label, retry_at), total=None)
        self.waiting = (row, retry_at, label)

    def tick(self) -> None:
        """Update the countdown of an automatic retry's wait."""
        if self.waiting is not None:
            row, retry_at, label = self.waiting
            self.progress.update(row, description=_countdown(label, retry_at))

    def _end_wait(self) -> None:
        if self.waiting is not None:
            self.progress.remove_task(self.waiting[0])
            self.waiting = None

    def close(self) -> None:
        """The run has ended: rows of steps that never ran say so instead of spinning."""
        self._end_wait()
        for name, row in self.rows.items():
            if name not in self.closed:
                self.closed.add(name)
                self.progress.update(
                    row,
                    description=f"{_DONE['skipped']} {name} ({self.kinds[name]}, skipped)",
                    closed=True,
                    total=self.progress.tasks[row].total or 1,
                )
                self.progress.stop_task(row)

    def _line(self, event: Event, text: str) -> None:
        where = event.data.get("step", "")
        item = event.data.get("item")
        label = f"{where}[{item}]" if item is not None else where
        self.console.print(f"  [dim]{label}[/dim] {text}", highlight=False)


def _countdown(label: str, retry_at: float) -> str:
    seconds = max(0.0, retry_at - time.time())
    return f"[yellow]{label}[/yellow] at {when(retry_at).split()[-1]}: in {seconds:.0f} s"


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
    detail = await engine.detail(run_id)
    start_after = await _last_seq(engine, run_id)
    with RunProgress(console, detail.steps, detail.run.max_retries) as progress:

        async def show() -> None:
            async for event in engine.events(run_id, after=start_after, follow=True, poll=0.1):
                progress.handle(event)

        async def count_down() -> None:
            while True:
                progress.tick()
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(show())
        ticker = asyncio.create_task(count_down())
        try:
            run = await engine.execute(run_id, resources=resources)
            if not run.status.finished or run.retry_at is not None:
                run = await engine.wait(run_id, poll=0.2)  # executing elsewhere
            await watcher  # the log is read to the run's end
            progress.close()
        finally:
            for task in (watcher, ticker):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return run


def execute_with_progress(engine: Engine, run_id: str, console: Console | None = None) -> Run:
    """Execute a queued run here with live progress; Ctrl-C leaves it resumable."""
    console = console or masked_console()

    async def execute() -> Run:
        run = await run_with_progress(engine, run_id, console)
        await summary(console, engine, run)
        return run

    try:
        return asyncio.run(execute())
    except KeyboardInterrupt:
        interrupted(console, engine, run_id)
        raise SystemExit(130) from None


def interrupted(console: Console, engine: Engine, run_id: str | None) -> None:
    """Ctrl-C: say what became of the run (resumable, or still due for its automatic retry)."""
    if run_id is None:
        console.print("\n[yellow]interrupted[/yellow] before a run was created")
        return
    run = engine.sync.get_run(run_id)
    if run.status is RunStatus.FAILED and run.retry_at is not None:
        console.print(
            f"\n[yellow]interrupted[/yellow] while waiting: run {run_id} stays queued for "
            f"automatic retry {run.auto_retries + 1}/{run.max_retries} at {when(run.retry_at)} "
            f"(`regen worker` carries it out); or retry now: [bold]regen retry {run_id}[/bold]",
            soft_wrap=True,
        )
        return
    console.print(
        f"\n[yellow]interrupted[/yellow]: run {run_id} keeps its checkpoints.\n"
        f"resume it with: [bold]regen retry {run_id}[/bold]",
        soft_wrap=True,
    )


async def summary(console: Console, engine: Engine, run: Run) -> None:
    """Where the run ended, why, and what to do next."""
    detail = await engine.detail(run.id)
    for name, counts in detail.items.items():
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        console.print(f"  {name}: {shown}")
    await explain(console, engine, run)
    console.print(f"artifacts: {engine.home / 'artifacts'}")
