"""Looking at runs and steering them: ``runs``, ``show``, ``events``, ``retry``, ``cancel``,
``gc``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from regen.cli._app import cli
from regen.cli._common import (
    exit_code,
    json_option,
    opened_engine,
    print_json,
    print_json_array,
    user_errors,
    when,
)

if TYPE_CHECKING:
    from regen.engine import Engine

_STATUS_STYLE = {
    "succeeded": "green",
    "partial": "yellow",
    "failed": "red",
    "cancelled": "magenta",
    "running": "cyan",
    "queued": "blue",
    "given_up": "red",
    "skipped": "dim",
}


def _styled(status: str) -> str:
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


@cli.command()
@click.option("--status", multiple=True, help="Only runs in this status (repeatable).")
@click.option("--flow", help="Only runs of this flow.")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@json_option
@click.pass_context
def runs(
    ctx: click.Context, status: tuple[str, ...], flow: str | None, limit: int, as_json: bool
) -> None:
    """List runs, newest first."""
    with opened_engine(ctx, reading=True) as engine, user_errors():
        try:
            found = engine.sync.list_runs(status=list(status) or None, flow=flow, limit=limit)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--status") from exc
    if as_json:
        print_json([{**asdict(r), "status": str(r.status)} for r in found])
        return
    table = Table("run", "flow", "status", "key", "retries", "created")
    table.columns[0].no_wrap = True
    for run in found:
        table.add_row(
            run.id,
            run.flow,
            _styled(str(run.status)),
            run.business_key or "-",
            f"{run.retry_count}/{run.max_retries}",
            when(run.created_at),
        )
    Console().print(table if found else "no runs yet")


@cli.command()
@click.argument("run_id")
@click.option(
    "--items",
    "item_limit",
    default=20,
    show_default=True,
    help="Items to list per map step (given-up and failed ones first).",
)
@json_option
@click.pass_context
def show(ctx: click.Context, run_id: str, item_limit: int, as_json: bool) -> None:
    """Show a run: its steps, checkpoints, items, attempts and errors."""
    with opened_engine(ctx, reading=True) as engine, user_errors():
        detail = engine.sync.detail(run_id)
        items: dict[str, list[Any]] = {}
        for step in detail.steps:
            if step.kind == "map":
                troubled = engine.sync.items(run_id, step.name, status="given_up", limit=item_limit)
                rest = engine.sync.items(run_id, step.name, limit=item_limit)
                seen = {i.idx for i in troubled}
                items[step.name] = (troubled + [i for i in rest if i.idx not in seen])[:item_limit]
    if as_json:
        record = detail.to_dict()
        record["items"] = {
            name: [asdict(i) | {"status": str(i.status)} for i in rows]
            for name, rows in items.items()
        }
        print_json(record)
        return
    console = Console()
    run = detail.run
    console.print(
        f"[bold]{run.flow}[/bold] run {run.id}: {_styled(str(run.status))}"
        f"  retries {run.retry_count}/{run.max_retries}"
        + (f"  key {run.business_key}" if run.business_key else "")
    )
    console.print(
        f"resumable: {detail.resumable}   last successful step: "
        f"{detail.last_successful_step or '-'}   failed step: {detail.failed_step or '-'}"
    )
    if run.error:
        console.print(f"[red]error[/red]: {run.error.get('message', run.error)}")
    table = Table("#", "step", "kind", "status", "attempts", "checkpointed", "items")
    for step in detail.steps:
        counts = detail.items.get(step.name)
        summary = ", ".join(f"{k} {v}" for k, v in (counts or {}).items() if v) or "-"
        table.add_row(
            str(step.position + 1),
            step.name,
            step.kind,
            _styled(str(step.status)),
            str(step.attempts),
            when(step.checkpointed_at),
            summary,
        )
    console.print(table)
    for name, rows in items.items():
        if not rows:
            continue
        grid = Table("item", "status", "attempts", "last errors", title=f"items of {name}")
        for item in rows:
            grid.add_row(
                str(item.idx),
                _styled(str(item.status)),
                str(len(item.attempts)),
                "\n".join(item.errors[-3:]) or "-",
            )
        console.print(grid)
    if detail.resumable:
        console.print(
            f"resume it: [bold]regen retry {run.id}[/bold]"
            f" (or --from STEP to redo a step and those after it)"
        )


#: Events read from the store at a time (the log of a large run is never read whole).
EVENT_PAGE = 1000


def _all_events(engine: Engine, run_id: str, after: int) -> Iterator[dict[str, Any]]:
    """Every event with ``seq > after``, page by page until the log is exhausted."""
    while batch := engine.sync.read_events(run_id, after, limit=EVENT_PAGE):
        for event in batch:
            yield event.to_dict()
        after = batch[-1].seq


@cli.command()
@click.argument("run_id")
@click.option("--after", default=0, show_default=True, help="Only events after this seq.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the run ends.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (an array of events); with --follow, JSON Lines: "
    "one event object per line, printed as it arrives.",
)
@click.pass_context
def events(ctx: click.Context, run_id: str, after: int, follow: bool, as_json: bool) -> None:
    """Print a run's event log (--follow: tail it until the run ends).

    With --json: one JSON array of every event. With --json --follow: JSON Lines, one
    JSON object per event and per line, printed as each is written, so a reader can act
    on each as it comes.
    """
    with opened_engine(ctx, reading=True) as engine, user_errors():
        engine.sync.get_run(run_id)
        if as_json and not follow:
            print_json_array(_all_events(engine, run_id, after))
            return
        console = Console(highlight=False)

        async def tail() -> None:
            async for event in engine.events(run_id, after=after, follow=follow):
                if as_json:
                    click.echo(json.dumps(event.to_dict(), ensure_ascii=False))
                else:
                    console.print(
                        f"{event.seq:>5} {when(event.at)} [bold]{event.type}[/bold] "
                        f"{_compact(event.data)}"
                    )

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(tail())


def _compact(data: dict[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in data.items())


@cli.command()
@click.argument("run_id")
@click.option(
    "--from",
    "from_step",
    metavar="STEP",
    help="Redo this step and every later one (earlier results are kept).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Execute the retried run here, or leave it queued for a worker.",
)
@click.pass_context
def retry(ctx: click.Context, run_id: str, from_step: str | None, wait: bool) -> None:
    """Retry a failed or partial run from its failed step (or from --from STEP)."""
    from regen.cli._progress import execute_with_progress  # noqa: PLC0415

    with opened_engine(ctx) as engine, user_errors():
        run = engine.sync.retry(run_id, from_step=from_step)
        where = f"from step {from_step!r}" if from_step else "from its failed step"
        click.echo(f"run {run.id} queued again {where} (retry {run.retry_count})")
        if wait:
            finished = execute_with_progress(engine, run.id)
            raise SystemExit(exit_code(finished.status))


@cli.command()
@click.argument("run_id")
@click.pass_context
def cancel(ctx: click.Context, run_id: str) -> None:
    """Cancel a queued run now, or a running one at its next safe point."""
    with opened_engine(ctx) as engine, user_errors():
        run = engine.sync.cancel(run_id)
    click.echo(
        f"run {run.id}: {run.status}" + (" (cancel requested)" if run.cancel_requested else "")
    )


@cli.command()
@json_option
@click.pass_context
def gc(ctx: click.Context, as_json: bool) -> None:
    """Delete expired checkpoints, old finished runs and unreferenced artifacts now."""
    with opened_engine(ctx) as engine, user_errors():
        counts = engine.sync.gc()
    record = asdict(counts)
    if as_json:
        print_json(record)
    else:
        click.echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in record.items()))
