"""``regen db``: the database itself — check it for damage, bring its schema up to date."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from regen.cli._app import cli
from regen.cli._common import json_option, print_json, user_errors


@cli.group()
def db() -> None:
    """The database: check it for damage, bring its schema up to date."""


def _chosen(ctx: click.Context) -> tuple[str, str | None]:
    """The database URL the root options (or the environment) name, and the data home."""
    from regen.store import database_url  # noqa: PLC0415

    options = ctx.find_root().params
    url, home = options.get("database_url"), options.get("home")
    return url or database_url(data_home=None if home is None else Path(home)), home


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


@db.command()
@json_option
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Check the database for damage (SQLite's integrity check; PostgreSQL: the schema's
    version and tables); exit 1 if it finds any.

    Works on a file regen refuses to open, to tell what is wrong with it.
    """
    from regen.store import check_database, shown_location  # noqa: PLC0415

    url, home = _chosen(ctx)
    with user_errors():
        problems = check_database(url, data_home=home)
    where = shown_location(url)
    if as_json:
        print_json({"database": where, "ok": not problems, "problems": problems})
    elif not problems:
        click.echo(f"{where}: ok")
    elif not _is_postgres(url) and not Path(url.removeprefix("sqlite:///")).exists():
        click.echo(
            f"{where}: no database here yet; regen creates it on first use, `regen db "
            "upgrade` now. One elsewhere is named by --home or --database-url (before `db`)."
        )
    else:
        postgres = _is_postgres(url)
        click.echo(f"{where}: {'not usable as it is' if postgres else 'damaged'}")
        for problem in problems[:20]:
            click.echo(f"  {problem}")
        if postgres:
            click.echo(
                "A schema version behind this regen's (or none yet): run `regen db upgrade`. "
                "A table or column missing at this version: the schema was changed outside "
                "regen; restore the database from a backup."
            )
        else:
            click.echo(
                "Restore the file from a backup, or move it away to start a new database "
                "(its runs are then lost); `sqlite3 regen.db .recover` may save some of them."
            )
    if problems:
        raise SystemExit(1)


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Bring the database's schema up to date (creating it in an empty database).

    Opening a database for writing does the same, unless REGEN_DB_AUTO_UPGRADE=0 (then
    only this command does: run it once before starting new workers).
    """
    from regen.store import open_store  # noqa: PLC0415

    url, home = _chosen(ctx)
    with user_errors():
        store = open_store(url, data_home=home, upgrade=True)
    try:
        click.echo(f"{store.location}: up to date")
    finally:
        asyncio.run(store.close())
