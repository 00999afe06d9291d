"""``regen demo``: regen's main job on its embedded defaults, in well under a minute.

A small daily-news batch runs against an in-process simulator with scripted faults and
is recorded in the data directory like any other run: live progress, retries, a give-up,
the quota's backfill, a failure at the last step, a resume from that step that keeps every
image, and where the artifacts are.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import click
from rich.console import Console

from regen.cli._app import cli
from regen.cli._common import console as masked_console
from regen.cli._common import opened_engine, user_errors


@cli.command()
@click.option(
    "--count",
    default=3,
    show_default=True,
    type=click.IntRange(1, 50),
    help="Posts wanted (5× candidates).",
)
@click.pass_context
def demo(ctx: click.Context, count: int) -> None:
    """Run a small daily-news batch against the simulator, with faults, then resume it."""
    try:
        from regen.sim import run_simulator  # noqa: PLC0415 - the `sim` extra is optional
    except ImportError as exc:
        raise click.ClickException(
            "regen demo runs the simulator, which needs the `sim` extra: "
            "pip install -e '.[sim]' in a clone of regen (or pip install 'regen-*.whl[sim]')"
        ) from exc
    from regen.cli import _demo_flow as demo_flow  # noqa: PLC0415

    console = masked_console()
    with (
        run_simulator(task_seconds=0.2, rules=demo_flow.SCRIPT) as sim,
        opened_engine(ctx) as engine,
        user_errors(),
    ):
        console.print(
            f"[bold]regen demo[/bold]: {count} illustrated posts wanted from "
            f"{count * 5} candidates; the simulator at {sim.url} injects faults.\n"
        )
        try:
            run = asyncio.run(_demo(engine, demo_flow, sim, console, count))
        except KeyboardInterrupt:
            console.print(
                "\n[yellow]interrupted[/yellow]: see `regen runs`; `regen retry RUN` resumes a run."
            )
            raise SystemExit(130) from None
        generated = _generated(sim.stats())
        detail = engine.sync.detail(run.id)
        _report(
            console,
            engine,
            run.id,
            generated,
            engine.sync.items(run.id, "illustrate", limit=10_000),
        )
    # With two posts or more, the second candidate's give-up is part of the show.
    gave_up = detail.items.get("illustrate", {}).get("given_up", 0)
    if not (
        str(run.status) == "succeeded" and run.retry_count == 1 and (gave_up >= 1 or count < 2)
    ):
        raise click.ClickException(f"the demo did not run as designed (run {run.id})")


async def _demo(engine: Any, demo_flow: Any, sim: Any, console: Console, count: int) -> Any:
    """Run the batch; when it fails at its last step, resume it from there."""
    from regen.cli._progress import run_with_progress, summary  # noqa: PLC0415

    services = demo_flow.make_services(sim.dashscope_base_url, sim.openai_base_url)
    try:
        started = await engine.start(demo_flow.flow, {"count": count})
        run = await run_with_progress(engine, started.run.id, console, resources=services)
        await summary(console, engine, run)
        if str(run.status) == "failed":
            console.print(
                "\nThe publishing call failed, so the run stopped at its last step."
                f"\n[bold]Resuming it from the failed step[/bold] (regen retry "
                f"{run.id}): every image is kept.\n"
            )
            await engine.retry(run.id)
            run = await run_with_progress(engine, run.id, console, resources=services)
            await summary(console, engine, run)
        return run
    finally:
        await services.images.aclose()
        await services.chat.aclose()


def _generated(stats: dict[str, Any]) -> Counter[str]:
    """How many images the simulator produced, per prompt."""
    counts: Counter[str] = Counter()
    for prompt, row in stats.get("prompts", {}).items():
        if isinstance(row, dict) and prompt.startswith("新闻配图"):
            counts[prompt] = int(row.get("produced", 0))
    return counts


def _report(
    console: Console, engine: Any, run_id: str, generated: Counter[str], items: list[Any]
) -> None:
    console.print("\n[bold]What happened[/bold]")
    for item in items:
        status = str(item.status)
        if status == "pending":
            continue
        prompt = item.input
        line = f"  {status:<9} {prompt}"
        if item.attempts:
            failed = ", ".join(str(a.get("kind")) for a in item.attempts)
            line += f"  — failed attempts: {failed}"
        if generated.get(prompt):
            line += f"; images generated: {generated[prompt]}"
        console.print(line, highlight=False)
    files = sorted((engine.home / "artifacts").rglob("*"))
    console.print(
        f"\nartifacts: {engine.home / 'artifacts'} ({sum(1 for f in files if f.is_file())} files)"
    )
    console.print(
        f"inspect the run: regen show {run_id}   its events: regen events {run_id}",
        soft_wrap=True,  # a command stays on one line, to copy
    )
