"""Looking at runs and steering them: ``runs``, ``show``, ``events``, ``retry``, ``cancel``,
``gc``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from regen.cli._app import cli
from regen.cli._common import (
    console,
    echo,
    exit_code,
    json_line,
    json_option,
    opened_engine,
    print_json,
    print_json_array,
    resolve_run,
    short_id,
    user_errors,
    when,
)
from regen.store import RunStatus

if TYPE_CHECKING:
    from regen.engine import Engine, Item, RunDetail, Step

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


_WIDE = click.option(
    "--wide", is_flag=True, help="Full run ids and times, nothing shortened to fit the terminal."
)


def _item_attempts(item: Item) -> str:
    """Attempts made on an item: its failed ones, plus the one that succeeded."""
    status = str(item.status)
    failed = len(item.attempts)
    if status == "succeeded":
        return "cached" if item.cached and not failed else str(failed + 1)
    if status == "given_up":
        return str(failed)
    return str(failed) if failed else "-"


def _step_attempts(step: Step) -> str:
    """Attempts of a step where they are recorded (streaming steps); ``-`` elsewhere: a map
    step's are its items', a plain step's are in its ``attempt.failed`` events."""
    return str(step.attempts) if step.attempts else "-"


@cli.command()
@click.option(
    "--status",
    multiple=True,
    type=click.Choice([str(s) for s in RunStatus]),
    help="Only runs in this status (repeatable).",
)
@click.option("--flow", help="Only runs of this flow.")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many runs, newest first.",
)
@_WIDE
@json_option
@click.pass_context
def runs(
    ctx: click.Context,
    status: tuple[str, ...],
    flow: str | None,
    limit: int,
    wide: bool,
    as_json: bool,
) -> None:
    """List runs, newest first (retries: automatic retries used / allowed)."""
    with opened_engine(ctx, reading=True) as engine, user_errors():
        found = engine.sync.list_runs(status=list(status) or None, flow=flow, limit=limit)
    if as_json:
        print_json([{**asdict(r), "status": str(r.status)} for r in found])
        return
    out = console(wide=wide)
    if not found:
        filters = [f"--status {s}" for s in status] + ([f"--flow {flow}"] if flow else [])
        out.print(f"no runs match {' '.join(filters)}" if filters else "no runs yet")
        return
    rows = [
        [
            short_id(run.id, wide=wide),
            run.flow,
            str(run.status),
            run.business_key or "-",
            f"{run.auto_retries}/{run.max_retries}",
            when(run.created_at, short=not wide),
        ]
        for run in found
    ]
    headers = ("run", "flow", "status", "key", "retries", "created")
    table = Table(*headers)
    widths = [max(len(h), *(len(r[n]) for r in rows)) for n, h in enumerate(headers)]
    for n, column in enumerate(table.columns):
        column.no_wrap = True  # ids, names, statuses and times are never cut
        column.min_width = widths[n]
    key = table.columns[3]
    if not wide:
        # The key alone gives way to fit the terminal: 3 columns of border and padding
        # around each cell, one more at the edge.
        fixed = sum(widths) - widths[3] + 3 * len(headers) + 1
        key.min_width = min(widths[3], max(5, out.width - fixed))
        key.max_width, key.overflow = key.min_width, "ellipsis"
    for row in rows:
        table.add_row(escape(row[0]), escape(row[1]), _styled(row[2]), escape(row[3]), *row[4:])
    out.print(table)


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--items",
    "item_limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Items to list per map step (given-up and failed ones first).",
)
@_WIDE
@json_option
@click.pass_context
def show(ctx: click.Context, run_id: str, item_limit: int, wide: bool, as_json: bool) -> None:
    """Show a run (RUN: its id or 4+ first characters): its steps, checkpoints, items,
    attempts and errors, and what to type next."""
    with opened_engine(ctx, reading=True) as engine, user_errors():
        run_id = resolve_run(engine, run_id)
        detail = engine.sync.detail(run_id)
        items: dict[str, list[Item]] = {}
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
        _show_text(engine, detail, items, wide=wide)


def _show_text(
    engine: Engine,
    detail: RunDetail,
    items: dict[str, list[Item]],
    *,
    wide: bool,
) -> None:
    from regen.cli._explain import explain, retries_used  # noqa: PLC0415

    out = console(wide=wide)
    run = detail.run
    out.print(f"[bold]{escape(run.flow)}[/bold] run {run.id}: {_styled(str(run.status))}")
    facts = [retries_used(run) if run.max_retries else "automatic retries: off"]
    if run.retry_count > run.auto_retries:
        facts.append(f"{run.retry_count - run.auto_retries} manual")
    if run.business_key:
        facts.append(f"key {escape(run.business_key)}")
    out.print("  ".join(facts), highlight=False)
    if run.lease_expired(time.time()):
        out.print(
            f"[yellow]its process stopped answering (lease expired {when(run.lease_expires_at)})"
            f": a `regen worker` takes it over, or `regen retry {short_id(run.id)}` now; "
            "it resumes from its checkpoints[/yellow]",
            highlight=False,
        )
    # The first failed or partial step: where a retry resumes, which may come before the
    # step the run failed at (a partial map step, then a failed step).
    resumes = detail.failed_step
    status = next((str(s.status) for s in detail.steps if s.name == resumes), "")
    out.print(
        f"resumable: {detail.resumable}   last successful step: "
        f"{detail.last_successful_step or '-'}   "
        + ("retry resumes from" if detail.resumable else "first failed step")
        + (f": {resumes} ({status})" if resumes else ": -"),
        highlight=False,
    )
    table = Table("#", "step", "kind", "status", "attempts", "checkpointed", "items")
    for column in table.columns[:6]:
        column.no_wrap = True  # a step's name, its kind, status and times: never cut
    for column, values in zip(
        table.columns[1:4],
        (
            [s.name for s in detail.steps],
            [s.kind for s in detail.steps],
            [str(s.status) for s in detail.steps],
        ),
        strict=True,
    ):
        column.min_width = max(len(str(column.header)), *map(len, values))
    for step in detail.steps:
        counts = detail.items.get(step.name)
        summary = ", ".join(f"{k} {v}" for k, v in (counts or {}).items() if v) or "-"
        table.add_row(
            str(step.position + 1),
            escape(step.name),
            step.kind,
            _styled(str(step.status)),
            _step_attempts(step),
            when(step.checkpointed_at, clock=not wide),
            summary,
        )
    out.print(table)
    for name, rows in items.items():
        if not rows:
            continue
        providers = any(item.provider for item in rows)
        headers = ["item", "status", "attempts", *(["provider"] if providers else [])]
        grid = Table(*headers, "last errors", title=f"items of {name}")
        grid.columns[1].no_wrap = True
        for item in rows:
            by = [escape(item.provider or "-")] if providers else []
            grid.add_row(
                str(item.idx),
                _styled(str(item.status)),
                _item_attempts(item),
                *by,
                escape("\n".join(item.errors[-3:])) or "-",
            )
        out.print(grid)
    asyncio.run(explain(out, engine, run))


#: Events read from the store at a time (the log of a large run is never read whole).
EVENT_PAGE = 1000


def _all_events(engine: Engine, run_id: str, after: int) -> Iterator[dict[str, Any]]:
    """Every event with ``seq > after``, page by page until the log is exhausted."""
    while batch := engine.sync.read_events(run_id, after, limit=EVENT_PAGE):
        for event in batch:
            yield event.to_dict()
        after = batch[-1].seq


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--after",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Only events after this seq.",
)
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
        run_id = resolve_run(engine, run_id)
        if as_json and not follow:
            print_json_array(_all_events(engine, run_id, after))
            return
        out = console()

        async def tail() -> None:
            async for event in engine.events(run_id, after=after, follow=follow):
                if as_json:
                    click.echo(json_line(event.to_dict()))
                else:
                    out.print(
                        f"{event.seq:>5} {when(event.at)} [bold]{event.type}[/bold] "
                        f"{escape(_compact(event.data))}",
                        highlight=False,
                    )

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(tail())


def _compact(data: dict[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in data.items())


@cli.command()
@click.argument("run_id", metavar="RUN")
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
    """Retry a failed or partial run (RUN: its id or 4+ first characters) from its failed
    step (or from --from STEP)."""
    from regen.cli._progress import execute_with_progress  # noqa: PLC0415

    with opened_engine(ctx) as engine, user_errors():
        run = engine.sync.retry(resolve_run(engine, run_id), from_step=from_step)
        where = f"from step {from_step!r}" if from_step else "from its failed step"
        echo(f"run {run.id} queued again {where} (retry {run.retry_count})")
        if not wait:
            echo(f"a `regen worker` runs it; follow it: regen events {short_id(run.id)} -f")
        if wait:
            finished = execute_with_progress(engine, run.id)
            raise SystemExit(exit_code(finished.status))


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.pass_context
def cancel(ctx: click.Context, run_id: str) -> None:
    """Cancel a queued run now, or a running one at its next safe point (RUN: its id or
    4+ first characters)."""
    with opened_engine(ctx) as engine, user_errors():
        run = engine.sync.cancel(resolve_run(engine, run_id))
    echo(
        f"run {run.id}: {run.status}"
        + (
            " (cancel requested: it stops at its next safe point; a last step already "
            "running finishes)"
            if run.cancel_requested
            else ""
        )
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
        echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in record.items()))
