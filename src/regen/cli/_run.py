"""Running flows: ``regen run MODULE:FLOW`` in this process, ``regen worker`` for queued runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click
from rich.console import Console

from regen.cli._app import cli
from regen.cli._common import exit_code, opened_engine, user_errors
from regen.cli._progress import run_with_progress, summary
from regen.engine import Run


def _params(values: tuple[str, ...]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: expected NAME=VALUE", param_hint="--param")
        parsed[name.strip()] = text
    return parsed


@cli.command()
@click.argument("flow_ref", metavar="MODULE:FLOW")
@click.option(
    "--param",
    "-p",
    "param_values",
    multiple=True,
    metavar="NAME=VALUE",
    help="A flow parameter (repeatable); checked before the run is created.",
)
@click.option("--key", help="Business key: one run per key; an existing run is resumed.")
@click.option("--queue", is_flag=True, help="Only queue the run, for `regen worker`.")
@click.pass_context
def run(
    ctx: click.Context, flow_ref: str, param_values: tuple[str, ...], key: str | None, queue: bool
) -> None:
    """Run a flow here with live progress. Ctrl-C leaves a resumable run."""
    from regen.engine import load_flow  # noqa: PLC0415 - keeps `regen --help` fast

    console = Console()
    with opened_engine(ctx) as engine, user_errors():
        flow = load_flow(flow_ref)
        params = flow.parse_params(_params(param_values))

        started_ids: list[str] = []

        async def start_and_run() -> Run | None:
            started = await engine.start(flow, params, key=key)
            run_id = started.run.id
            started_ids.append(run_id)
            if queue:
                verb = "queued" if started.created else f"found ({started.run.status})"
                console.print(f"{flow.name}: run {run_id} {verb}")
                return None
            verb = "started" if started.created else ("retried" if started.retried else "found")
            console.print(f"{flow.name}: run {run_id} {verb}")
            finished = await run_with_progress(engine, run_id, console)
            await summary(console, engine, finished)
            return finished

        try:
            finished = asyncio.run(start_and_run())
        except KeyboardInterrupt:
            which = started_ids[0] if started_ids else "RUN"
            console.print(
                f"\n[yellow]interrupted[/yellow]: run {which} keeps its checkpoints.\n"
                f"resume it with: [bold]regen retry {which}[/bold]",
                soft_wrap=True,
            )
            raise SystemExit(130) from None
    if finished is not None:
        raise SystemExit(exit_code(finished.status))


@cli.command()
@click.option(
    "--flow",
    "flows",
    multiple=True,
    metavar="MODULE:FLOW",
    help="Flows to claim runs of (repeatable; default: any importable flow).",
)
@click.option("--concurrency", default=4, show_default=True, help="Runs executed at once.")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between queue checks.")
@click.option("--max-runs", type=int, help="Stop after executing this many runs.")
@click.pass_context
def worker(
    ctx: click.Context, flows: tuple[str, ...], concurrency: int, poll: float, max_runs: int | None
) -> None:
    """Claim and execute queued runs (and runs whose process died) until stopped."""
    with opened_engine(ctx) as engine, user_errors():
        names = [flow.name for flow in engine.register(*flows)] or None
        click.echo(
            f"worker {engine.owner} on {engine.location}: "
            f"{', '.join(names) if names else 'any flow'}"
        )

        async def serve() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            executed: int = await engine.worker(
                flows=names,
                concurrency=concurrency,
                poll=poll,
                stop=stop,
                gc_interval=engine.settings.gc_interval,
                max_runs=max_runs,
            )
            return executed

        done = asyncio.run(serve())
    click.echo(f"worker stopped after {done} runs")
