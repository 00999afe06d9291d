"""``regen health``: every configured provider checked once (or every interval with
``--watch``), shown as a table or JSON with its circuit breaker; exit status 0 when all
are healthy, else 1. The checks feed the breakers every worker on the database shares.

With no provider configured (no key in the environment, no ``regen.toml``), the built-in
simulator is started in this process and checked, labelled as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click
from rich.table import Table

from regen.cli._app import cli
from regen.cli._common import console, json_option, print_json, user_errors, when

if TYPE_CHECKING:
    from regen.health import HealthMonitor, ProviderHealth
    from regen.providers import Registry
    from regen.store import Store

#: The name and ``source`` label of the simulator regen falls back to.
SIMULATOR_NAME = "sim"
SIMULATOR_SOURCE = "built-in simulator"
# The simulator takes any non-empty key; this one says whose it is in its logs.
_SIMULATOR_KEY = "sk-regen-builtin-simulator"

_STYLE = {"healthy": "green", "unhealthy": "red", "unknown": "dim"}
_BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "red"}


@contextlib.contextmanager
def registry_or_simulator() -> Iterator[Registry]:
    """The providers the environment and ``regen.toml`` declare (:meth:`Registry.load`);
    when they declare none, the built-in simulator, started in this process until the
    block ends, as provider ``sim`` with ``source = "built-in simulator"``. The registry's
    transport is the caller's to close (``await registry.aclose()``)."""
    from regen.providers import ProviderConfig, Registry, Secret  # noqa: PLC0415 - fast --help

    registry = Registry.load()
    if len(registry):
        yield registry
        return
    try:
        from regen.sim import run_simulator  # noqa: PLC0415 - the `sim` extra is optional
    except ImportError as exc:
        raise click.ClickException(
            "no provider is configured (set OPENAI_API_KEY, DASHSCOPE_API_KEY, … or write a "
            "regen.toml), and the built-in simulator needs: pip install 'regen[sim]'"
        ) from exc
    with run_simulator() as sim:
        registry.add(
            ProviderConfig(
                name=SIMULATOR_NAME,
                kind="openai",
                base_url=sim.openai_base_url,
                api_key=Secret(_SIMULATOR_KEY),
                key_source=None,
                model="sim",
                source=SIMULATOR_SOURCE,
            )
        )
        yield registry


def _open_store(ctx: click.Context) -> Store | None:
    """The store of the root options, to keep the history in; ``None`` (said on stderr)
    when it cannot be written: the checks still run."""
    from regen.foundation import RegenError  # noqa: PLC0415 - keeps `regen --help` fast
    from regen.store import open_store  # noqa: PLC0415

    options = ctx.find_root().params
    try:
        return open_store(options.get("database_url"), data_home=options.get("home"))
    except RegenError as exc:
        click.echo(f"regen health: checks not recorded: {exc}", err=True)
        return None


_COLUMNS = ("provider", "status", "latency", "error", "quota", "last check", "breaker")


def _table(statuses: list[ProviderHealth]) -> Table:
    table = Table(*_COLUMNS, caption_justify="left")
    for column in (0, 1, 6):  # names and states whole; the other columns give way
        table.columns[column].no_wrap = True
    for s in statuses:
        style = _STYLE.get(s.status, "")
        if s.source == SIMULATOR_SOURCE:  # said below the table: the columns keep their room
            table.caption = f"{s.name}: the {SIMULATOR_SOURCE} (no provider is configured)"
        table.add_row(
            s.name,
            f"[{style}]{s.status}[/{style}]",
            "-" if s.latency_ms is None else f"{s.latency_ms:.0f} ms",
            s.error or "-",
            "-" if s.quota_remaining is None else f"{s.quota_remaining:g}%",
            when(s.last_check, clock=True),
            _breaker(s),
        )
    return table


def _breaker(s: ProviderHealth) -> str:
    if s.breaker is None:
        return "-"
    style = _BREAKER_STYLE.get(s.breaker, "")
    wait = ""
    if s.breaker == "open" and s.breaker_retry_after:
        wait = f" ({s.breaker_retry_after:.0f} s)"
    return f"[{style}]{s.breaker.replace('_', '-')}{wait}[/{style}]"


def _show(statuses: list[ProviderHealth], as_json: bool, watching: bool) -> None:
    if not as_json:
        console().print(_table(statuses))
        return
    documents = [s.to_dict() for s in statuses]
    if watching:  # one line per round, so a reader can take each as it comes
        from regen.foundation import mask_data  # noqa: PLC0415 - keeps `regen --help` fast

        sys.stdout.write(json.dumps(mask_data(documents), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    else:
        print_json(documents)


async def _rounds(monitor: HealthMonitor, as_json: bool, watch: bool) -> list[ProviderHealth]:
    try:
        while True:
            statuses = await monitor.check()
            _show(statuses, as_json, watch)
            if not watch:
                return statuses
            await asyncio.sleep(min(monitor.delay(n) for n in monitor.names()))
    finally:
        await monitor.stop()
        await monitor.registry.aclose()
        if monitor.store is not None:
            await monitor.store.close()


@cli.command()
@click.option("--watch", is_flag=True, help="Check again every interval until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    envvar="REGEN_HEALTH_INTERVAL_S",
    help="Seconds between checks with --watch (default 60; also MODEL_HEALTH_CHECK_INTERVAL).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    envvar="REGEN_HEALTH_TIMEOUT_S",
    help="Seconds one check may take (default 5; also MODEL_HEALTH_CHECK_TIMEOUT).",
)
@json_option
@click.pass_context
def health(
    ctx: click.Context,
    watch: bool,
    interval: float | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Check every configured provider: status, latency, error, quota left.

    Exits 0 when every provider is healthy, 1 otherwise (with --watch: as of the last
    check when Ctrl-C ends it).
    """
    from regen.engine import StoreState  # noqa: PLC0415 - fast --help
    from regen.health import HealthMonitor, HealthSettings  # noqa: PLC0415

    last: list[ProviderHealth] = []
    with user_errors():
        settings = HealthSettings.from_env()
        settings = HealthSettings(interval or settings.interval, timeout or settings.timeout)
        with registry_or_simulator() as registry:
            store = _open_store(ctx)
            if store is not None:
                # Breakers every worker on this database shares: checks feed them, and
                # the table shows them.
                registry.use_state(StoreState(store))
            monitor = HealthMonitor(registry, store=store, settings=settings)

            async def main() -> None:
                nonlocal last
                last = await _rounds(monitor, as_json, watch)

            try:
                asyncio.run(main())
            except KeyboardInterrupt:
                last = monitor.statuses()
    healthy = bool(last) and all(s.healthy for s in last)
    ctx.exit(0 if healthy else 1)
