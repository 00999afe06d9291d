"""``regen sim``: run the provider simulator in the foreground."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

import click

from regen.cli._app import cli, refused

T = TypeVar("T")

_NEEDED = ("uvicorn", "httptools", "PIL")


class _Duration(click.ParamType[float]):
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        from regen.sim import parse_duration  # noqa: PLC0415 - keep `regen --help` fast

        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()


def _require_extra() -> None:
    missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(
            f"the simulator needs the 'sim' extra (missing: {', '.join(missing)}); "
            "install it with: pip install -e '.[sim]' in a clone of regen "
            "(or pip install 'dist/regen-VERSION-py3-none-any.whl[sim]' from a built wheel)"
        )


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    show_envvar=True,
    help="Address to listen on (keep it on loopback).",
)
@click.option(
    "--port",
    default=8900,
    show_default=True,
    type=click.IntRange(0, 65535),
    show_envvar=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--faults",
    default="",
    show_envvar=True,
    metavar="NAME=P,...",
    help="Seeded random fault profile, e.g. hang=0.05,rate_limit=0.1,fake_image=0.05.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    show_envvar=True,
    help="Seed of the fault profile (same seed, same faults).",
)
@click.option(
    "--script",
    type=click.Path(exists=True, dir_okay=False),
    show_envvar=True,
    help="Script of faults by prompt or task id (.toml or .json).",
)
@click.option(
    "--latency",
    default="0ms",
    show_default=True,
    type=DURATION,
    show_envvar=True,
    help="Added to every answer, e.g. 50ms.",
)
@click.option(
    "--jitter",
    default="0ms",
    show_default=True,
    type=DURATION,
    show_envvar=True,
    help="Uniform +/- spread around --latency, e.g. 10ms.",
)
@click.option(
    "--keys",
    default="",
    show_envvar=True,
    metavar="K1,K2",
    help="Accepted API keys; empty accepts any non-empty key.",
)
@click.option(
    "--task-seconds",
    default="0.5s",
    show_default=True,
    type=DURATION,
    show_envvar=True,
    help="Simulated time a DashScope/photo task takes (videos take twice as long).",
)
@click.option(
    "--slow-seconds",
    default="2s",
    show_default=True,
    type=DURATION,
    show_envvar=True,
    help="Delay of the 'slow' fault when it names none.",
)
@click.option(
    "--chunk-delay",
    default="0ms",
    show_default=True,
    type=DURATION,
    show_envvar=True,
    help="Pause between streamed chunks.",
)
@click.option(
    "--rpm",
    type=click.IntRange(min=1),
    default=None,
    show_envvar=True,
    help="Enforce this many requests per minute (429 past it).",
)
@click.option(
    "--rps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    show_envvar=True,
    help="Enforce this many requests per second, a token bucket (429 with Retry-After past it).",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=None,
    show_envvar=True,
    help="Requests the per-second bucket holds at once (default: --rps rounded up).",
)
@click.option(
    "--outage-after",
    type=click.IntRange(min=1),
    default=None,
    show_envvar=True,
    metavar="N",
    help="From the N-th API request on, answer every request 503 (needs --outage-for).",
)
@click.option(
    "--outage-for",
    default="0s",
    type=DURATION,
    show_envvar=True,
    help="How long the outage of --outage-after lasts, e.g. 30s.",
)
def sim(
    host: str,
    port: int,
    faults: str,
    seed: int,
    script: str | None,
    latency: float,
    jitter: float,
    keys: str,
    task_seconds: float,
    slow_seconds: float,
    chunk_delay: float,
    rpm: int | None,
    rps: float | None,
    burst: int | None,
    outage_after: int | None,
    outage_for: float,
) -> None:
    """Run the provider simulator (OpenAI, DashScope, photo/video tasks, payments)."""
    _require_extra()
    from regen.sim import (  # noqa: PLC0415 - keep `regen --help` fast
        SimConfig,
        load_script,
        parse_keys,
        parse_profile,
        serve,
    )

    ctx = click.get_current_context()

    def parsed(name: str, parse: Callable[[str], T], value: str) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise refused(ctx, name, str(exc)) from exc

    profile = parsed("faults", parse_profile, faults)
    if script is not None:
        parsed("script", load_script, script)  # read and checked now, with a clear message
    try:
        config = SimConfig(
            host=host,
            port=port,
            faults=profile,
            seed=seed,
            script=script,
            latency=latency,
            jitter=jitter,
            keys=parse_keys(keys),
            task_seconds=task_seconds,
            slow_seconds=slow_seconds,
            chunk_delay=chunk_delay,
            rpm=rpm,
            rps=rps,
            burst=burst,
            outage_after=outage_after,
            outage_for=outage_for,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    def ready(url: str) -> None:
        click.echo(f"regen sim listening on {url}")
        click.echo(f"  OpenAI:     {url}/v1  (also {url}/compatible-mode/v1)")
        click.echo(f"  DashScope:  {url}/api/v1")
        click.echo(f"  photo/video {url}/photo/v1   payments {url}/v3/pay")
        click.echo(f"  stats:      {url}/_sim/stats   (Ctrl-C to stop)")

    from regen.sim import UnsupportedUvicorn  # noqa: PLC0415

    try:
        serve(config, on_ready=ready)
    except UnsupportedUvicorn as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
