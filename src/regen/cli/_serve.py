"""``regen serve``: the HTTP service (REST, Server-Sent Events, metrics) with a worker."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import click

from regen.cli._app import cli
from regen.cli._common import opened_engine, user_errors


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind (0: any free one).",
)
@click.option(
    "--token",
    envvar=["REGEN_TOKEN", "REGEN_SERVE_TOKEN"],
    show_envvar=True,
    help="Required by every route but /healthz; needed to bind other than loopback.",
)
@click.option(
    "--flow",
    "flows",
    multiple=True,
    metavar="MODULE:FLOW",
    help="A flow POST /api/runs may start (repeatable).",
)
@click.option(
    "--no-execute",
    is_flag=True,
    help="Only queue runs; `regen worker` processes execute them.",
)
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Runs the worker executes at once.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    token: str | None,
    flows: tuple[str, ...],
    no_execute: bool,
    concurrency: int,
) -> None:
    """Serve the HTTP API (REST, Server-Sent Events, /metrics), hosting a worker."""
    if token is not None and not token.strip():
        raise click.BadParameter(
            "the token is blank: give one that is not only spaces, or none at all",
            param_hint="'--token' / REGEN_TOKEN",
        )
    if not _loopback(host) and not token:
        raise click.UsageError(
            f"binding {host} makes the API reachable from other machines: give it a token "
            "(--token or REGEN_TOKEN), or bind 127.0.0.1"
        )
    try:
        import uvicorn  # noqa: PLC0415 - keeps `regen --help` fast

        from regen.service import create_app  # noqa: PLC0415
    except ImportError as exc:
        raise click.ClickException(
            f"regen serve needs the server extra: pip install 'regen[server]' ({exc})"
        ) from None
    from regen.cli._health import registry_or_simulator  # noqa: PLC0415
    from regen.health import AlertSettings, HealthMonitor  # noqa: PLC0415
    from regen.store import open_store  # noqa: PLC0415

    options = ctx.find_root().params
    with (
        opened_engine(ctx) as engine,
        user_errors(),
        registry_or_simulator() as registry,
    ):
        alerts = AlertSettings.load()
        # The monitor's checks feed the breakers every worker on the database shares.
        registry.use_state(engine.provider_state)
        # The monitor keeps its history in the engine's database, on a connection of its own.
        history = open_store(options.get("database_url"), data_home=options.get("home"))
        monitor = HealthMonitor(registry, store=history)
        app = create_app(
            engine,
            token=token or None,
            flows=flows,
            execute=not no_execute,
            worker_concurrency=concurrency,
            health=monitor,
            alerts=alerts,
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise click.ClickException(f"cannot bind {host}:{port}: {exc.strerror}") from None
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        served = ", ".join(engine.registry.names()) or "none"
        click.echo(
            f"regen serve: http://{shown}:{bound} on {engine.location} "
            f"(flows: {served}; worker: {'off' if no_execute else 'on'}; "
            f"token: {'required' if token else 'none'}; "
            f"alerts: {_alert_targets(alerts)})",
        )
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3
        )
        _close_after(app, registry, history)
        uvicorn.Server(config).run(sockets=[sock])


def _alert_targets(alerts: Any) -> str:
    """Where alerts go, for the start-up line (a webhook by its host only: its URL may
    hold a token)."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    targets = []
    if alerts.command is not None:
        targets.append("command")
    if alerts.webhook is not None:
        targets.append(f"webhook to {urlsplit(alerts.webhook).hostname}")
    return " and ".join(targets) or "off"


def _close_after(app: Any, *resources: Any) -> None:
    """Close ``resources`` (``await x.aclose()`` or ``x.close()``) when the app's lifespan
    ends, on the server's own event loop (their connections belong to it)."""
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(running: Any) -> AsyncIterator[None]:
        try:
            async with started(running):
                yield
        finally:
            for resource in resources:
                closing = getattr(resource, "aclose", None) or resource.close
                await closing()

    app.router.lifespan_context = lifespan
