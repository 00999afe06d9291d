"""Where regen keeps its data: ``REGEN_HOME`` (default ``./.regen``) and the database URL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from regen.foundation import ConfigError, env_bool
from regen.store._errors import URL_SET_BY, DatabaseUnusable
from regen.store._interface import Store
from regen.store._postgres_db import masked

T = TypeVar("T")


def home(environ: Mapping[str, str] | None = None) -> Path:
    """The data directory: ``REGEN_HOME``, or ``./.regen``."""
    env = os.environ if environ is None else environ
    return Path(env.get("REGEN_HOME") or ".regen").expanduser()


def database_url(environ: Mapping[str, str] | None = None, data_home: Path | None = None) -> str:
    """``REGEN_DATABASE_URL``, or ``sqlite:///<home>/regen.db``."""
    env = os.environ if environ is None else environ
    url = env.get("REGEN_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{(data_home or home(env)) / 'regen.db'}"


_POSTGRES = ("postgres://", "postgresql://")


def auto_upgrade() -> bool:
    """``REGEN_DB_AUTO_UPGRADE`` (on unless ``0``): opening a database for writing creates
    or upgrades its schema; off, only ``regen db upgrade`` does."""
    return env_bool("REGEN_DB_AUTO_UPGRADE", True)


def open_store(
    url: str | None = None,
    *,
    data_home: str | os.PathLike[str] | None = None,
    readonly: bool = False,
    upgrade: bool | None = None,
) -> Store:
    """Open the store a URL names (``sqlite:///path/to/regen.db`` or
    ``postgresql://user@host:5432/db``); by default the one in the environment's data
    directory. ``readonly``: for reading only (no schema change; SQLite). ``upgrade``:
    bring an older PostgreSQL schema up to date (default: ``REGEN_DB_AUTO_UPGRADE``;
    SQLite always upgrades a file it opens for writing)."""
    chosen = url or database_url(data_home=None if data_home is None else Path(data_home))
    # Errors show only the URL's scheme: it may carry a password.
    named = f"database URL {_scheme(chosen)}…"
    if chosen.startswith("sqlite:///"):
        from regen.store._sqlite import SQLiteStore  # noqa: PLC0415 - chosen by URL

        return SQLiteStore(chosen.removeprefix("sqlite:///"), readonly=readonly, upgrade=upgrade)
    if chosen.startswith(_POSTGRES):
        try:
            import psycopg  # noqa: PLC0415, F401 - only checks the extra is installed
            import psycopg_pool  # noqa: PLC0415, F401
        except ImportError as exc:
            raise ConfigError(
                f"{named}: the PostgreSQL store needs the postgres extra: "
                "pip install 'regen[postgres]'"
            ) from exc
        from regen.store._postgres import PostgresStore  # noqa: PLC0415 - chosen by URL

        return PostgresStore(chosen, upgrade=upgrade)
    what = f"{named}: unknown scheme" if "://" in chosen else "database URL: not a URL"
    raise ConfigError(
        f"{what}; expected sqlite:///path or postgresql://user@host:5432/database ({URL_SET_BY})"
    )


def shown_location(url: str) -> str:
    """The database ``url`` names, as regen shows it: a SQLite file by its absolute path,
    a PostgreSQL URL without its password."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///{Path(url.removeprefix('sqlite:///')).expanduser().resolve()}"
    return masked(url)


def _scheme(url: str) -> str:
    # Never echo a whole URL: it may carry a password.
    return url.split("://", 1)[0] + "://"


def check_database(
    url: str | None = None, *, data_home: str | os.PathLike[str] | None = None
) -> list[str]:
    """What is wrong with the database a URL names (nothing: an empty list), found without
    opening it as a store: works on a file a store refuses to open."""
    chosen = url or database_url(data_home=None if data_home is None else Path(data_home))
    if chosen.startswith("sqlite:///"):
        from regen.store._sqlite_db import file_problems  # noqa: PLC0415 - chosen by URL

        return file_problems(Path(chosen.removeprefix("sqlite:///")))
    try:
        store = open_store(chosen, upgrade=False)  # refuses an unknown scheme with its message
    except DatabaseUnusable as exc:  # a schema behind or ahead of this regen's, or not regen's
        return [str(exc)]
    try:
        return _wait(store.check())
    finally:
        _wait(store.close())


def _wait(coro: Coroutine[Any, Any, T]) -> T:
    # ``check_database`` serves synchronous callers (the CLI): no loop is running here.
    return asyncio.run(coro)
