"""The root ``regen`` command; subcommands register themselves from their modules."""

from __future__ import annotations

import importlib
import os
import sys

import click
from click.core import ParameterSource

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


class _Command(click.Command):
    """A command whose refusal of an option's value names the environment variable the
    value came from, when it came from one (the user may never have typed the option)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter as exc:
            if exc.param_hint is None and exc.param is not None:
                exc.param_hint = _hint(ctx, exc.param)
            raise


class _Group(_Command, click.Group):
    """The root command: its subcommands and subgroups are of these classes too."""

    command_class = _Command
    group_class = type


def refused(ctx: click.Context, name: str, message: str) -> click.BadParameter:
    """A refusal of the value of option ``name`` that click took and regen did not, named
    as click names its own: by the environment variable it came from, if one gave it."""
    param = next(p for p in ctx.command.params if p.name == name)
    return click.BadParameter(message, ctx=ctx, param=param, param_hint=_hint(ctx, param))


def _hint(ctx: click.Context, param: click.Parameter) -> str | None:
    """How an error names ``param``: by its variable when one gave its value, else as
    click does (``None``)."""
    variable = _variable_given(ctx, param)
    return None if variable is None else f"{variable} (read as {param.get_error_hint(ctx)})"


def _variable_given(ctx: click.Context, param: click.Parameter | None) -> str | None:
    """The environment variable that gave ``param`` its value, if one did."""
    if not isinstance(param, click.Option) or param.name is None:
        return None
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return None
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    if not names and ctx.auto_envvar_prefix:
        names = [f"{ctx.auto_envvar_prefix}_{param.name.upper()}"]
    return next((name for name in names if os.environ.get(name)), None)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "REGEN"},
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
