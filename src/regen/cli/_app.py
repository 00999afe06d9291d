"""The root ``regen`` command; subcommands register themselves from their modules."""

from __future__ import annotations

import importlib
import os
import sys

import click

from regen import __version__

# Modules that add commands to ``cli``. Each imports its heavy or optional dependencies
# inside its command, so ``regen --help`` stays fast and a missing extra fails only there.
_COMMAND_MODULES = (
    "regen.cli._db",
    "regen.cli._demo",
    "regen.cli._health",
    "regen.cli._run",
    "regen.cli._runs",
    "regen.cli._serve",
    "regen.cli._sim",
    "regen.cli._stats",
    "regen.cli._worker",
)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "REGEN"}
)
@click.version_option(__version__, prog_name="regen")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="REGEN_HOME",
    help="Data directory (default ./.regen): the database and artifacts.",
)
@click.option(
    "--database-url",
    envvar="REGEN_DATABASE_URL",
    help="Database URL (default sqlite:///HOME/regen.db).",
)
def cli(home: str | None, database_url: str | None) -> None:
    """regen: make AI content generation survive flaky AI APIs."""
    # One data directory for the whole process: flows' resources (and anything else that
    # reads REGEN_HOME) see the one given on the command line.
    if home is not None:
        os.environ["REGEN_HOME"] = home


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name)


def main() -> None:
    """Entry point of the ``regen`` console script."""
    # As under `python -m`: a flow named MODULE:FLOW is imported from the current directory.
    if "" not in sys.path:
        sys.path.insert(0, "")
    _load_commands()
    cli()
