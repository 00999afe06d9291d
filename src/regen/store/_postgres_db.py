"""Opening a PostgreSQL database for regen: its schema, its version, and error translation.

The schema is created or upgraded in one transaction under an advisory lock, so workers
starting at once do it once; a database at a newer version than this code knows is
refused untouched. ``REGEN_DB_AUTO_UPGRADE=0`` leaves upgrades to ``regen db upgrade``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from regen.store import _queries
from regen.store._errors import (
    URL_SET_BY,
    DatabaseUnreachable,
    NotARegenDatabase,
    SchemaTooNew,
    SchemaTooOld,
    StoreError,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection

Q = _queries.queries("postgres")
#: The channel LISTEN/NOTIFY wakes followers on; the payload is a run id.
CHANNEL = "regen_events"
#: The channel that wakes idle workers when a run is queued; the payload is its flow.
QUEUE_CHANNEL = "regen_queue"


def latest_version() -> int:
    """The schema version this code writes: the number of the last migration."""
    return _queries.migrations("postgres")[-1][0]


#: Connection parameters a URL's query may carry that are secrets (libpq's names).
_SECRET_PARAMS = frozenset({"password", "sslpassword"})


def masked(url: str) -> str:
    """The URL without its password, in its userinfo or its query
    (``postgresql://user@host:5432/db``)."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}@" if parts.username else ""
        parts = parts._replace(netloc=f"{user}{netloc}")
    if parts.query:  # the other parameters kept as written
        kept = [
            pair
            for pair in parts.query.split("&")
            if unquote_plus(pair.partition("=")[0]).lower() not in _SECRET_PARAMS
        ]
        parts = parts._replace(query="&".join(kept))
    return parts.geturl()


async def migrate(conn: AsyncConnection[Any], where: str, *, upgrade: bool) -> int:
    """Build the schema in an empty database, or bring an older one up to date; the version
    the database was at (0: it was empty). ``upgrade=False``: refuse to change anything."""
    latest = latest_version()
    version = await _version(conn, where)
    if version == latest:
        return version
    _refuse_newer(version, where)
    if not upgrade:
        found = f"schema version {version}" if version else "no regen schema yet"
        raise SchemaTooOld(
            where, f"{found}, this regen needs version {latest}; run `regen db upgrade`"
        )
    async with conn.transaction():
        await conn.execute(Q["schema_lock"])
        # Read again under the lock: another worker may have just done it.
        version = await _version(conn, where)
        _refuse_newer(version, where)
        if version == 0:
            await conn.execute(_queries.read("postgres", "schema.sql").encode())
            await conn.execute(Q["init_schema_version"], {"version": latest})
        elif version < latest:
            for number, script in _queries.migrations("postgres"):
                if number > version:
                    await conn.execute(script.encode())
            await conn.execute(Q["set_schema_version"], {"version": latest})
    return version


async def _rows(conn: AsyncConnection[Any], query: str) -> list[tuple[Any, ...]]:
    """The rows of ``query`` as tuples, whatever the connection's row factory."""
    from psycopg.rows import tuple_row  # noqa: PLC0415

    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(query)
    return await cursor.fetchall()


async def _version(conn: AsyncConnection[Any], where: str) -> int:
    # Which tables exist, read from the catalog's rows as of this statement: to_regclass()
    # answers from a per-connection cache, which can still say "no such table" after the
    # schema lock was taken and another process had created the schema.
    tables = {row[0] for row in await _rows(conn, Q["regen_tables"])}
    if "regen_schema" not in tables:
        if "runs" in tables:
            raise NotARegenDatabase(
                where,
                "holds a table named runs but no regen_schema table: it is not regen's; "
                f"nothing was changed: point the database URL at another one ({URL_SET_BY})",
            )
        return 0
    rows = await _rows(conn, Q["schema_version"])
    return int(rows[0][0]) if rows else 0


def _refuse_newer(version: int, where: str) -> None:
    if version > latest_version():
        raise SchemaTooNew(
            where,
            f"schema version {version} was written by a newer regen (this one knows up "
            f"to {latest_version()}); nothing was changed: upgrade regen to use it",
        )


async def problems(conn: AsyncConnection[Any], where: str) -> list[str]:
    """What is wrong with the database's schema (nothing: an empty list)."""
    version = await _version(conn, where)
    if version != latest_version():
        return [f"schema version {version}; this regen expects {latest_version()}"]
    found: dict[str, set[str]] = {}
    for table, column in await _rows(conn, Q["table_columns"]):
        found.setdefault(table, set()).add(column)
    missing = []
    for table, columns in expected_columns().items():
        lacking = [c for c in columns if c not in found.get(table, set())]
        if table not in found:
            missing.append(f"table {table!r} is missing")
        elif lacking:
            missing.append(f"table {table!r} lacks column(s) {', '.join(lacking)}")
    return missing


def expected_columns() -> dict[str, list[str]]:
    """Each table's columns as ``schema.sql`` declares them (read from its text)."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in _queries.read("postgres", "schema.sql").splitlines():
        stripped = line.strip()
        if stripped.startswith("CREATE TABLE "):
            current = tables.setdefault(stripped.split()[2], [])
        elif stripped.startswith(");"):
            current = None
        elif current is not None and stripped and not stripped.startswith(("--", "CONSTRAINT")):
            word = stripped.split()[0]
            if word.upper() != "PRIMARY":
                current.append(word)
    return tables


#: What the server says when it refuses who or what a connection asks for.
_REFUSED = re.compile(
    r'(database|role) "[^"]*" does not exist|password authentication failed'
    r"|no pg_hba\.conf entry"
)


def _passwords(url: str) -> list[str]:
    """The passwords a URL carries, in its userinfo or its query."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS and v]
    return found


def translate(exc: Exception, where: str, url: str = "") -> StoreError:
    """A driver error as a :class:`StoreError` saying what to do about it (the password of
    ``url``, should the driver quote it, masked)."""
    import psycopg  # noqa: PLC0415 - the driver is an optional extra

    text = str(exc).strip() or type(exc).__name__
    for password in _passwords(url):
        text = text.replace(password, "***")
    if isinstance(exc, psycopg.OperationalError) and _REFUSED.search(text):
        # The server answered, and said no: no wait makes this go away.
        return StoreError(
            f"{where}: PostgreSQL refused the connection ({text}); create the database and "
            f"its user (docs/deploy.md), or fix the database URL ({URL_SET_BY})"
        )
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnreachable(
            f"{where}: cannot reach PostgreSQL ({text}); check that the server runs and "
            f"the database URL names it ({URL_SET_BY})"
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return StoreError(f"{where}: {text}; the database user needs CREATE and write rights")
    return StoreError(f"{where}: {text}")
