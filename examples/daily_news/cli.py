"""The example's command line: ``python -m examples.daily_news auto --title … --count 3``.

Every option of ``auto`` and ``posts`` can also be set by an environment variable
``DAILY_NEWS_<OPTION>`` (``DAILY_NEWS_DATA_DIR=…``, ``DAILY_NEWS_COUNT=5``); the demo's
``--data-dir`` is ``DAILY_NEWS_DEMO_DATA_DIR``, so a demo never writes into the batch's
data.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from pathlib import Path

import click
from rich.console import Console

from examples.daily_news import app
from examples.daily_news.images import image_policy
from examples.daily_news.posts import PostStore
from examples.daily_news.runtime import Runtime, SimSettings, image_backend
from regen import RegenError


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if value is None:
        return app.today()
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2025-06-01") from None


def _profile(ctx: click.Context, param: click.Parameter, value: str) -> dict[str, float]:
    if not value:
        return {}
    from regen.sim import parse_profile  # noqa: PLC0415 - the 'sim' extra, only when asked

    try:
        return parse_profile(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


#: ``auto`` and ``posts`` read ``DAILY_NEWS_<OPTION>`` (click would otherwise prefix each
#: command's options with its name: ``DAILY_NEWS_AUTO_DATA_DIR``).
_SHARED_ENV = {"auto_envvar_prefix": "DAILY_NEWS"}


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "DAILY_NEWS"}
)
def cli() -> None:
    """Daily news posts illustrated by DashScope images that survive flaky APIs (regen seed 000)."""


@cli.command(context_settings=_SHARED_ENV)
@click.option("--title", default="每日新闻", show_default=True, help="The batch's title.")
@click.option(
    "--count",
    default=3,
    show_default=True,
    type=click.IntRange(1, 200),
    help="Posts wanted; count*5 candidates are tried in order until this many succeed.",
)
@click.option("--assets-glob", default="", help="Local pictures to attach to the posts (glob).")
@click.option(
    "--data-dir",
    default="data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where posts, drafts, logs and regen's store live.",
)
@click.option("--date", default=None, callback=_date, help="The batch's date (default today).")
@click.option(
    "--key",
    default="",
    help="The run's business key (default: title and date). The same key resumes the same run.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="When resuming, try given-up posts again instead of keeping their give-up.",
)
@click.option(
    "--faults",
    default="",
    callback=_profile,
    metavar="NAME=P,...",
    help="Offline only: the simulator's seeded fault profile, e.g. "
    "hang=0.05,fake_image=0.1,server_error=0.1.",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Offline only: the fault profile's seed."
)
@click.option(
    "--script",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Offline only: a simulator script of faults by prompt (.toml/.json).",
)
@click.option(
    "--sim-task-seconds",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0),
    help="Offline only: how long a simulated image task takes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def auto(
    title: str,
    count: int,
    assets_glob: str,
    data_dir: Path,
    date: str,
    key: str,
    retry_failed: bool,
    faults: dict[str, float],
    seed: int,
    script: str | None,
    sim_task_seconds: float,
    as_json: bool,
) -> None:
    """Generate today's posts: pick candidates, illustrate them, save drafts.

    IMAGE_PROVIDER=aliyun with DASHSCOPE_API_KEY uses DashScope (without the key it
    fails at once); with neither IMAGE_PROVIDER nor a key (or IMAGE_PROVIDER=sim) the batch
    runs offline against regen's simulator. ALIYUN_IMAGE_MAX_ATTEMPTS (3),
    ALIYUN_IMAGE_RETRY_SLEEP_S (2), ALIYUN_IMAGE_TIMEOUT_S (180) and
    ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S (60) set the retries.
    """
    console = Console(stderr=as_json)
    sim = SimSettings(faults=faults, seed=seed, script=script, task_seconds=sim_task_seconds)
    try:
        policy = image_policy()
        with app.file_logging(data_dir) as log_path, image_backend(sim=sim) as backend:
            console.print(
                f"images: {backend.description}; retries: {policy.attempts} attempts, "
                f"{policy.wait:g}s apart, generation ≤ {policy.phases['generate']:g}s, "
                f"download ≤ {policy.phases['download']:g}s; log: {log_path}",
                highlight=False,
            )
            runtime = Runtime(
                backend.client, data_dir, console, policy=policy, retry_given_up=retry_failed
            )
            summary = asyncio.run(
                app.run_batch(
                    runtime, title=title, count=count, date=date, assets_glob=assets_glob, key=key
                )
            )
    except KeyboardInterrupt:
        console.print("\ninterrupted: run the same command again to resume the batch")
        sys.exit(130)
    except RegenError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        app.print_summary(console, summary, PostStore(data_dir))
    if summary["status"] == "failed":
        sys.exit(1)


@cli.command(context_settings=_SHARED_ENV)
@click.option(
    "--data-dir",
    default="data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
def posts(data_dir: Path) -> None:
    """List the posts on disk with their status and image attempts."""
    store = PostStore(data_dir)
    for post in store.all():
        platform = post.get("platform") or {}
        generate = platform.get("image_generate") or {}
        attempts = generate.get("attempts") or (platform.get("image") or {}).get("attempts", "")
        give_up = " give_up" if generate.get("give_up") else ""
        click.echo(
            f"{post['post_id']}  {post.get('status'):<12} attempts={attempts}{give_up}  "
            f"{post.get('title')}"
        )


@cli.command()
@click.option(
    "--data-dir",
    default="data/demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
def demo(data_dir: Path) -> None:
    """A short offline batch with scripted faults: retries, a give-up, backfill (seconds)."""
    from examples.daily_news.demo import run_demo  # noqa: PLC0415 - keeps --help fast

    run_demo(data_dir, Console())


def main() -> None:
    """Entry point of ``python -m examples.daily_news``."""
    cli()
