"""``regen db``: the database itself — check it for damage, bring its schema up to date."""

from __future__ import annotations

from pathlib import Path

import click

from regen.cli._app import cli
from regen.cli._common import json_option, opened_engine, print_json, user_errors


@cli.group()
def db() -> None:
    """The database: check it for damage, bring its schema up to date."""


@db.command()
@json_option
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Check the database for damage (SQLite's integrity check); exit 1 if it finds any.

    Works on a file regen refuses to open, to tell what is wrong with it.
    """
    from regen.store import check_database, database_url  # noqa: PLC0415

    options = ctx.find_root().params
    url, home = options.get("database_url"), options.get("home")
    with user_errors():
        problems = check_database(url, data_home=home)
    where = url or database_url(data_home=None if home is None else Path(home))
    where = where.split("@")[-1] if "@" in where else where  # never a password
    if as_json:
        print_json({"database": where, "ok": not problems, "problems": problems})
    elif not problems:
        click.echo(f"{where}: ok")
    else:
        click.echo(f"{where}: damaged")
        for problem in problems[:20]:
            click.echo(f"  {problem}")
        click.echo(
            "Restore the file from a backup, or move it away to start a new database "
            "(its runs are then lost); `sqlite3 regen.db .recover` may save some of them."
        )
    if problems:
        raise SystemExit(1)


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Bring the database's schema up to date (opening it for writing does the same)."""
    with opened_engine(ctx) as engine:
        click.echo(f"{engine.location}: up to date")
