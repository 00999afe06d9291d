"""Running a flow: ``regen run MODULE:FLOW`` in this process (or queued for ``regen worker``)."""

from __future__ import annotations

import asyncio

import click

from regen.cli._app import cli
from regen.cli._common import console as masked_console
from regen.cli._common import exit_code, opened_engine, user_errors
from regen.cli._progress import interrupted, run_with_progress, summary
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
@click.option(
    "--key",
    help="Business key: one run per key; an existing run is resumed "
    "(default: the flow's own key from its params, if it makes one).",
)
@click.option("--queue", is_flag=True, help="Only queue the run, for `regen worker`.")
@click.pass_context
def run(
    ctx: click.Context, flow_ref: str, param_values: tuple[str, ...], key: str | None, queue: bool
) -> None:
    """Run a flow here with live progress. Ctrl-C leaves a resumable run."""
    from regen.engine import load_flow  # noqa: PLC0415 - keeps `regen --help` fast

    console = masked_console()
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
                if started.retried:
                    verb = "queued again (its failed run is retried)"
                console.print(f"{flow.name}: run {run_id} {verb}")
                if started.created or started.retried:
                    console.print(f"a `regen worker` runs it; follow it: regen events {run_id} -f")
                return None
            verb = "started" if started.created else ("retried" if started.retried else "found")
            console.print(f"{flow.name}: run {run_id} {verb}")
            finished = await run_with_progress(engine, run_id, console)
            await summary(console, engine, finished)
            return finished

        try:
            finished = asyncio.run(start_and_run())
        except KeyboardInterrupt:
            interrupted(console, engine, started_ids[0] if started_ids else None)
            raise SystemExit(130) from None
    if finished is not None:
        raise SystemExit(exit_code(finished.status))
