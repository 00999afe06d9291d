"""``regen stats``: retry statistics per provider and failure kind — attempts, retries,
give-ups, retry rate, breaker openings, fallbacks, calls saved — and each provider's
breaker state, from the counters every worker writes to the store."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING

import click
from rich.table import Table

from regen.cli._app import cli
from regen.cli._common import console, json_option, opened_engine, print_json, when

if TYPE_CHECKING:
    from regen.health import ProviderStats

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "red"}
_SAVED = ("saved_by_breaker", "saved_by_cache", "saved_by_checkpoint")
#: The row the engine's own savings are shown under (counters of provider ``""``).
ENGINE_ROW = "(engine)"


def parse_since(text: str, now: float) -> float:
    """``1h``, ``30m``, ``2d``, ``90s``, ``1h30m`` (that long ago) or an ISO date/time
    (local time unless it says otherwise) as seconds since the epoch."""
    raw = text.strip().lower()
    if raw and _AGO.sub("", raw) == "":
        return now - sum(float(n) * _UNITS[unit] for n, unit in _AGO.findall(raw))
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected a duration such as 30m, 1h, 2d (that long ago) or an ISO "
            "date/time such as 2026-01-31T09:00",
            param_hint="'--since'",
        ) from None


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _table(stats: list[ProviderStats]) -> Table:
    table = Table(
        "provider",
        "kind",
        "attempts",
        "retries",
        "give-ups",
        "rate",
        "opened",
        "fallbacks",
        "saved",
        "breaker",
    )
    table.columns[0].no_wrap = True
    for s in stats:
        name = s.provider or ENGINE_ROW
        style = _BREAKER_STYLE.get(s.breaker or "", "dim")
        table.add_row(
            name,
            "all",
            str(s["attempts"]),
            str(s["retries"]),
            str(s["give_ups"]),
            _rate(s.retry_rate),
            str(s["breaker_opened"]),
            str(s["fallbacks"]),
            str(s.saved),
            f"[{style}]{s.breaker or '-'}[/{style}]",
        )
        attempts = s["attempts"]
        for k in s.kinds:
            if not k.kind:
                continue
            table.add_row(
                "",
                k.kind,
                str(k["attempts"] or ""),
                str(k["retries"]),
                str(k["give_ups"]),
                _rate(k["retries"] / attempts if attempts else None),
                str(k["breaker_opened"]),
                str(k["fallbacks"]),
                "",
                "",
            )
    return table


@cli.command()
@click.option(
    "--since",
    "since_text",
    envvar="REGEN_STATS_SINCE",
    help="Only what was counted since then: 30m, 1h, 2d ago, or an ISO date/time "
    "(default: everything kept, 30 days).",
)
@click.option("--wide", is_flag=True, help="Nothing wrapped to fit the terminal.")
@json_option
@click.pass_context
def stats(ctx: click.Context, since_text: str | None, wide: bool, as_json: bool) -> None:
    """Retry statistics per provider and failure kind, with each breaker's state.

    Counted by every worker on this database: attempts, retries, give-ups, retry rate,
    breaker openings, fallbacks, and calls saved (refused by an open breaker, served by
    the result cache, kept by checkpoints on a retry or resume).
    """
    from regen.health import provider_stats  # noqa: PLC0415 - keeps `regen --help` fast

    now = time.time()
    since = None if since_text is None else parse_since(since_text, now)
    with opened_engine(ctx, reading=True) as engine:
        found = asyncio.run(provider_stats(engine.provider_state, since))
    if as_json:
        print_json(
            {"since": since, "until": now, "providers": [s.to_dict() for s in found]},
        )
        return
    out = console(wide=wide)
    if not found:
        out.print(
            "Nothing counted yet"
            + (f" since {when(since)}" if since is not None else "")
            + ": provider calls are counted as runs execute."
        )
        return
    if since is not None:
        out.print(f"Since {when(since)}")
    out.print(_table(found))
    saved = {name: sum(s[name] for s in found) for name in _SAVED}
    out.print(
        "rate: retries per attempt; opened: breaker openings; saved: calls not made — "
        f"{saved['saved_by_breaker']} refused by an open breaker, "
        f"{saved['saved_by_cache']} served by the result cache, "
        f"{saved['saved_by_checkpoint']} steps and items kept by their checkpoints",
        style="dim",
    )
