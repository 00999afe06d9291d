"""What every engine command shares: opening the engine, printing JSON, turning errors into
messages that say what to fix. Everything printed here goes through the secret masker, so a
key that reached a run's params, events or errors is never shown in clear."""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TextIO, TypeVar, cast

import click
from rich.console import Console

from regen.foundation import ConfigError, RegenError, mask_data, mask_secrets

F = TypeVar("F", bound=Callable[..., Any])


def json_option(fn: F) -> F:
    """``--json``: one JSON document on stdout, nothing else there."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float spelled as a string (``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``): strict JSON parsers (JavaScript's, Go's, jq) refuse
    the bare tokens Python writes for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data: unknown objects as their text, non-finite floats as
    strings, every secret masked."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return _finite(mask_data(json.loads(text)))


def _dumps(value: Any) -> str:
    return json.dumps(_plain(value), ensure_ascii=False, indent=2, allow_nan=False)


def json_line(value: Any) -> str:
    """``value`` as one line of strict JSON (JSON Lines), secrets masked."""
    return json.dumps(_plain(value), ensure_ascii=False, allow_nan=False)


def print_json(value: Any) -> None:
    """Write ``value`` as one JSON document to stdout."""
    sys.stdout.write(_dumps(value) + "\n")


def print_json_array(values: Iterable[Any]) -> None:
    """Write ``values`` as one JSON array to stdout, element by element (the same text as
    :func:`print_json` of the list, without holding the list)."""
    first = True
    for value in values:
        sys.stdout.write(("[\n" if first else ",\n") + textwrap.indent(_dumps(value), "  "))
        first = False
    sys.stdout.write("[]\n" if first else "\n]\n")


def echo(text: str, *, err: bool = False) -> None:
    """Print a line for people (``click.echo``) with every secret in it masked."""
    click.echo(mask_secrets(text), err=err)


class _MaskedStream:
    """A text stream that masks secrets in what is written to it (rich writes each printed
    renderable in one piece), and is otherwise the stream it wraps (``isatty``, ``fileno``…)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(mask_secrets(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def console(*, stderr: bool = False, wide: bool = False) -> Console:
    """A rich console on stdout (or stderr) whose output has every secret masked
    (``wide``: tables as wide as their content, whatever the terminal's width). Output
    to a pipe or a file is as wide as its content too, unless ``COLUMNS`` sets a width:
    a value cut to fit an imaginary 80-column terminal is no use to ``grep``."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(
        file=cast("TextIO", _MaskedStream(stream)), width=10_000 if wide or piped else None
    )


@contextmanager
def opened_engine(ctx: click.Context, *, reading: bool = False) -> Iterator[Any]:
    """The engine on the data directory and database the root options chose.

    ``reading``: the command only reads, so a data directory it cannot write (a read-only
    mount, another user's folder) is opened for reading instead of refused.
    """
    from regen.engine import Engine  # noqa: PLC0415 - keeps `regen --help` fast
    from regen.store import ReadOnlyStore  # noqa: PLC0415

    options = ctx.find_root().params
    url, home = options.get("database_url"), options.get("home")
    with user_errors():
        try:
            engine = Engine(url, home=home)
        except ReadOnlyStore:
            if not reading:
                raise
            engine = Engine(url, home=home, readonly=True)
    try:
        yield engine
    finally:
        engine.close()


#: How ``regen run``, ``regen retry`` and ``regen demo`` exit, by the run's final status
#: (2: a usage error or a refused command, 130: interrupted).
EXIT_CODES = {"succeeded": 0, "failed": 1, "partial": 3, "cancelled": 4}


def exit_code(status: str) -> int:
    """The exit status for a run that ended with ``status``."""
    return EXIT_CODES.get(str(status), 1)


class _UsageError(click.ClickException):
    """A message and exit status 2: what was typed does not fit (a bad ``-p`` param, an
    unknown run or flow, a retry of a run that succeeded), as distinct from a run that
    failed (1)."""

    exit_code = 2


@contextmanager
def user_errors() -> Iterator[None]:
    """regen's own errors become a one-line message and exit status 1, or 2 for a command
    that cannot be done as typed or configured (params that do not fit the flow, an
    unknown run, flow or step, a transition the run's status refuses, a setting refused:
    :class:`regen.ConfigError`); no traceback."""
    try:
        yield
    except RegenError as exc:
        # Imported here: keeps `regen --help` fast.
        from regen.engine import FlowNotFound, ParamsError  # noqa: PLC0415
        from regen.store import InvalidTransition, RunNotFound  # noqa: PLC0415

        refused = (ConfigError, ParamsError, FlowNotFound, RunNotFound, InvalidTransition)
        error = _UsageError if isinstance(exc, refused) else click.ClickException
        raise error(mask_secrets(str(exc))) from exc


def when(timestamp: float | None, *, short: bool = False, clock: bool = False) -> str:
    """A local time for people, or ``-`` (``short``: without the year; ``clock``: the
    time of day only)."""
    if timestamp is None:
        return "-"
    shape = "%H:%M:%S" if clock else ("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S")
    return datetime.fromtimestamp(timestamp).strftime(shape)


#: The characters of a run id shown in tables (``--wide`` shows them all), and the fewest
#: a command accepts as a prefix.
SHORT_ID = 8
MIN_PREFIX = 4


def short_id(run_id: str, *, wide: bool = False) -> str:
    """A run id as tables show it."""
    return run_id if wide else run_id[:SHORT_ID]


def resolve_run(engine: Any, text: str) -> str:
    """The full id of the run whose id is ``text`` or starts with it (4 characters or
    more), as git resolves a commit; refused, with the candidates, when it is ambiguous."""
    prefix = text.strip().lower()
    if len(prefix) < MIN_PREFIX:
        raise _UsageError(
            f"run id {text!r} is too short: give {MIN_PREFIX} characters or more "
            "(`regen runs` lists the runs)"
        )
    found = engine.sync.list_runs(id_prefix=prefix, limit=11)
    if not found:
        raise _UsageError(f"no run id starts with {text!r} (`regen runs` lists them)")
    exact = [r for r in found if r.id == prefix]
    if len(found) == 1 or exact:
        return str((exact or found)[0].id)
    lines = [f"  {r.id}  {r.flow}  {r.status}  {when(r.created_at)}" for r in found[:10]]
    more = "\n  …" if len(found) > 10 else ""
    raise _UsageError(
        f"run id {text!r} is ambiguous; it starts these runs:\n"
        + "\n".join(lines)
        + more
        + "\ngive more characters"
    )
