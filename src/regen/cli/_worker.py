"""``regen worker``: claim and execute queued runs, one line per thing it does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from regen.cli._app import cli
from regen.cli._common import echo, json_line, opened_engine, short_id, user_errors, when

if TYPE_CHECKING:
    from regen.engine import WorkerEvent


def _line(event: WorkerEvent) -> str:
    """One line for people: the time, what happened, to which run, and why."""
    head = f"{when(event.at).split()[-1]} {event.action.replace('_', ' ')}"
    text = f"{head} {short_id(event.run_id)} ({event.flow})"
    if event.action == "finished":
        text += f": {event.status}"
    elif event.action == "failed":
        error = event.error or {}
        kind = f"{error['kind']}: " if error.get("kind") else ""
        where = f" at step {error['step']!r}" if error.get("step") else ""
        text += f"{where}: {kind}{error.get('message', '')}"
        if event.retry_at is not None:
            text += f"; automatic retry at {when(event.retry_at).split()[-1]}"
    elif event.action == "put_back" and event.reason:
        text += f": {event.reason}"
    elif event.action == "lost":
        text += f": {event.reason or 'another process took its lease'}"
    return text


@contextlib.contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """regen's warnings (the database out of reach, a run that ended with an engine error)
    on stderr, one line each, while the worker runs."""
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("regen")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@cli.command()
@click.option(
    "--flow",
    "flows",
    multiple=True,
    metavar="MODULE:FLOW",
    help="Flows to claim runs of (repeatable; default: any importable flow).",
)
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(min=1),
    help="Runs executed, and map steps of others' runs helped with, at once.",
)
@click.option(
    "--poll",
    default=1.0,
    show_default=True,
    show_envvar=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between queue checks.",
)
@click.option("--max-runs", type=click.IntRange(min=0), help="Stop after executing this many runs.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON Lines: one object per run claimed, taken over, finished, failed or put back.",
)
@click.pass_context
def worker(
    ctx: click.Context,
    flows: tuple[str, ...],
    concurrency: int,
    poll: float,
    max_runs: int | None,
    as_json: bool,
) -> None:
    """Claim and execute queued runs (and runs whose process died) until stopped; with
    room left, run items of map steps of runs other processes execute.

    Prints a line per run claimed, taken over, finished, failed or put back; Ctrl-C
    puts the runs in progress back in the queue for another worker.
    """

    put_back: list[str] = []

    def on_event(event: WorkerEvent) -> None:
        if event.action == "put_back":
            put_back.append(event.run_id)
        if as_json:
            click.echo(json_line({"event": event.action, **asdict(event)}))
        else:
            echo(_line(event))

    from regen.health import AlertSettings, AlertWatcher  # noqa: PLC0415 - fast --help

    with _warnings_on_stderr(), opened_engine(ctx) as engine, user_errors():
        alerts = AlertSettings.load()
        names = [flow.name for flow in engine.register(*flows)] or None
        started = (
            f"worker {engine.owner} on {engine.location}: "
            f"{', '.join(names) if names else 'any flow'}"
        )
        if as_json:
            click.echo(json_line({"event": "started", "owner": engine.owner, "flows": names}))
        else:
            echo(started)

        async def serve() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            async with contextlib.AsyncExitStack() as stack:
                if alerts.enabled:
                    await stack.enter_async_context(AlertWatcher(engine.provider_state, alerts))
                executed: int = await engine.worker(
                    flows=names,
                    concurrency=concurrency,
                    poll=poll,
                    stop=stop,
                    gc_interval=engine.settings.gc_interval,
                    max_runs=max_runs,
                    on_event=on_event,
                )
            return executed

        done = asyncio.run(serve())
    if as_json:
        click.echo(json_line({"event": "stopped", "executed": done, "put_back": len(put_back)}))
    else:
        echo(
            f"worker stopped after {done} runs; {len(put_back)} put back in the queue"
            + (f" ({', '.join(short_id(r) for r in put_back)})" if put_back else "")
        )
