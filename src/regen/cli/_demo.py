"""``regen demo``: regen's main job on its embedded defaults, in well under a minute.

A small daily-news batch runs against an in-process simulator with scripted faults and
is recorded in the data directory like any other run: live progress, retries, a give-up,
the quota's backfill, a failure at the last step, a resume from that step that keeps every
image, and where the artifacts are. Then the simulator goes down and a second batch runs:
its circuit breaker opens, and a second simulator, declared as its fallback, makes the
images.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

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
    """Run a small daily-news batch against the simulator, with faults, then resume it;
    then another while the simulator is down, its images made by a fallback."""
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
        run_simulator(rules=demo_flow.BACKUP_SCRIPT) as backup,
        opened_engine(ctx) as engine,
        user_errors(),
    ):
        console.print(
            f"[bold]regen demo[/bold]: {count} illustrated posts wanted from "
            f"{count * 5} candidates; the simulators `sim` at {sim.url} (images) and "
            f"`backup` at {backup.url} (chat) inject faults.\n"
        )
        services = demo_flow.make_services(sim.dashscope_base_url, backup.openai_base_url)
        try:
            run, down = asyncio.run(_demo(engine, demo_flow, services, sim, console, count))
        except KeyboardInterrupt:
            console.print(
                "\n[yellow]interrupted[/yellow]: see `regen runs`; `regen retry RUN` resumes a run."
            )
            raise SystemExit(130) from None
        detail = engine.sync.detail(run.id)
    # With two posts or more, the second candidate's give-up is part of the show.
    gave_up = detail.items.get("illustrate", {}).get("given_up", 0)
    if not (
        str(run.status) == "succeeded"
        and run.retry_count == 1
        and (gave_up >= 1 or count < 2)
        and down.as_designed
    ):
        raise click.ClickException(f"the demo did not run as designed (runs {run.id}, {down.run})")


@dataclass
class _Outage:
    """What the second batch, run while ``sim`` was down, showed."""

    run: str
    primary: str
    fallback: str
    status: str = ""
    served: Counter[str] = field(default_factory=Counter)
    wanted: int = 0
    opened: bool = False
    answered: int = 0
    spared: int = 0

    @property
    def as_designed(self) -> bool:
        return (
            self.status == "succeeded"
            and self.opened
            and self.served[self.fallback] >= self.wanted
            and not self.served[self.primary]
        )


async def _demo(
    engine: Any, demo_flow: Any, services: Any, sim: Any, console: Console, count: int
) -> tuple[Any, _Outage]:
    """Run the batch (resumed from its last step when it fails there), then a second one
    while the simulator is down."""
    from regen.cli._progress import run_with_progress, summary  # noqa: PLC0415

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
        _report(
            console,
            engine,
            run.id,
            _generated(sim.stats()),
            await engine.items(run.id, "illustrate", limit=10_000),
        )
        # Enough posts that the breaker opens and then spares `sim` some calls.
        wanted = max(2 * count, demo_flow.BREAKER_FAILURES + 3)
        down = await _while_down(engine, demo_flow, services, sim, console, wanted)
        return run, down
    finally:
        await services.aclose()


async def _while_down(
    engine: Any, demo_flow: Any, services: Any, sim: Any, console: Console, count: int
) -> _Outage:
    """A second batch while ``sim`` answers every request with a 503: its breaker opens
    (a line says so as it happens) and the fallback makes the images."""
    from regen.cli._demo_flow import FALLBACK, PRIMARY  # noqa: PLC0415
    from regen.cli._progress import run_with_progress, summary  # noqa: PLC0415

    console.print(
        f"\n[bold]Now `{PRIMARY}` goes down[/bold]: every request answered 503 for a minute. "
        f"`{PRIMARY}` is declared with a fallback, `{FALLBACK}`, a second simulator "
        f"(OpenAI-style; in a regen.toml: "
        + escape(f'[providers.{PRIMARY}] fallback = ["{FALLBACK}"]')
        + f"). Another batch of {count} posts:\n"
    )
    sim.outage(60)
    started = await engine.start(demo_flow.flow, {"count": count})
    down = _Outage(started.run.id, PRIMARY, FALLBACK, wanted=count)
    watch = asyncio.create_task(_watch_breaker(services.registry, console, down))
    try:
        run = await run_with_progress(engine, started.run.id, console, resources=services)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    await _breaker_opened(services.registry, console, down)  # in case the run was quicker
    await summary(console, engine, run)
    sim.recover()
    down.status = str(run.status)
    for item in await engine.items(run.id, "illustrate", limit=10_000):
        output = item.output if isinstance(item.output, dict) else {}
        if str(item.status) == "succeeded" and output.get("provider"):
            down.served[str(output["provider"])] += 1
    down.answered = int(sim.stats().get("outage", {}).get("answered", 0))
    counts = await services.registry.state.counts()
    down.spared = counts.get((PRIMARY, "", "saved_by_breaker"), 0)
    console.print(
        f"\n[bold]{down.served[FALLBACK]} images served by the fallback `{FALLBACK}` while "
        f"`{PRIMARY}` was down[/bold]: `{PRIMARY}` answered {down.answered} requests with a "
        f"503 before its breaker opened; the open breaker spared it {down.spared} more."
    )
    console.print(
        f"which provider served each image: regen show {run.id}",
        soft_wrap=True,  # a command stays on one line, to copy
    )
    return down


async def _watch_breaker(registry: Any, console: Console, down: _Outage) -> None:
    """Print one line as soon as ``sim``'s circuit breaker opens (its state lives in the
    registry's shared state, which has nothing to wait on: it is read every 20 ms)."""
    while True:
        if await _breaker_opened(registry, console, down):
            return
        await asyncio.sleep(0.02)


async def _breaker_opened(registry: Any, console: Console, down: _Outage) -> bool:
    """Whether ``sim``'s breaker has opened (said once, on the console)."""
    from regen.cli._demo_flow import BREAKER_FAILURES  # noqa: PLC0415

    if down.opened:
        return True
    for key, status in (await registry.breakers()).items():
        if key.startswith(f"breaker:{down.primary}:") and status.get("state") == "open":
            down.opened = True
            console.print(
                f"  [yellow]circuit breaker open[/yellow]: `{down.primary}` failed "
                f"{BREAKER_FAILURES} calls in a row; for the next "
                f"{status.get('retry_after', 0):.0f} s its calls go straight to "
                f"`{down.fallback}`, without a request to `{down.primary}`",
                highlight=False,
            )
            return True
    return False


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
