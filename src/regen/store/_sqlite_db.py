"""Opening an SQLite database for regen: checks, settings, schema, and error translation.

Nothing is written to a file before it is known to be regen's (or empty) and of a schema
version this code understands; a damaged, foreign or newer file is refused untouched.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from regen.store import _queries
from regen.store._errors import (
    CorruptDatabase,
    NotARegenDatabase,
    ReadOnlyStore,
    SchemaTooNew,
    StoreBusy,
    StoreError,
)

#: ``PRAGMA application_id`` of regen databases ("rgn1"), so a foreign file is recognised.
APPLICATION_ID = 0x72676E31
_HEADER = b"SQLite format 3\x00"
#: How long a writer waits for another process's lock before :class:`StoreBusy`.
BUSY_TIMEOUT_MS = 10_000
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def latest_version() -> int:
    """The schema version this code writes: the number of the last migration."""
    return _queries.migrations("sqlite")[-1][0]


def synchronous_setting() -> str:
    """``REGEN_SQLITE_SYNCHRONOUS`` (``NORMAL`` by default; see docs/engine.md)."""
    value = os.environ.get("REGEN_SQLITE_SYNCHRONOUS", "NORMAL").strip().upper()
    if value not in _SYNCHRONOUS:
        raise StoreError(
            f"REGEN_SQLITE_SYNCHRONOUS={value!r}: expected one of {', '.join(_SYNCHRONOUS)}"
        )
    return value


def _check_file(path: Path) -> None:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReadOnlyStore(
            f"cannot create the data directory {folder}: {exc.strerror or exc}; "
            "set REGEN_HOME (or REGEN_DATABASE_URL) to a writable place"
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ReadOnlyStore(
            f"the data directory {folder} is read-only; regen needs to write its database "
            "and journal there: set REGEN_HOME (or REGEN_DATABASE_URL) to a writable place"
        )
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise ReadOnlyStore(f"{path} cannot be read and written by this user")
        with path.open("rb") as handle:
            header = handle.read(len(_HEADER))
        if header and header != _HEADER:
            raise CorruptDatabase(
                str(path),
                "not an SQLite database (bad file header); "
                "move it away or point REGEN_HOME elsewhere",
            )


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) regen's database at ``path``, at the latest schema."""
    _check_file(path)
    try:
        # isolation_level=None: no implicit transactions; writers say BEGIN IMMEDIATE.
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.Error as exc:
        raise translate(exc, str(path)) from exc
    try:
        _inspect(conn, path)
        _configure(conn)
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _inspect(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse, before writing anything, a damaged, foreign or newer database."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabase(
            str(path),
            f"cannot be read as a database ({exc}); "
            "nothing was changed: restore it from a backup or move it "
            "away",
        ) from exc
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
        raise NotARegenDatabase(
            str(path),
            "an SQLite database that regen did not create; "
            "nothing was changed: point REGEN_HOME elsewhere",
        )
    if version > latest_version():
        raise SchemaTooNew(
            str(path),
            f"schema version {version} was written by a newer "
            f"regen (this one knows up to {latest_version()}); nothing was "
            "changed: upgrade regen to use it",
        )


def _configure(conn: sqlite3.Connection) -> None:
    try:
        # WAL: readers never block the writer nor it them, so the CLI, a worker and the
        # server can share the file; the setting is persistent in the file.
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL: a commit survives a crash of the process (it is in the WAL file
        # before COMMIT returns) but the last ones may be lost on power loss; FULL also
        # syncs every commit. Chosen for speed; see docs/engine.md, "Durability".
        conn.execute(f"PRAGMA synchronous={synchronous_setting()}")
        # Wait for another process's write lock instead of failing at once with BUSY.
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # SQLite leaves foreign keys unchecked unless asked; runs cascade to their rows.
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise translate(exc, "configuring the database") from exc


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Build a new database from the schema file, or bring an older one up to date."""
    latest = latest_version()
    if conn.execute("PRAGMA user_version").fetchone()[0] == latest:
        return
    with transaction(conn):
        # Read again under the write lock: another process may have just done it.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            _run_script(conn, _queries.read("sqlite", "schema.sql"))
        else:
            for number, script in _queries.migrations("sqlite"):
                if number > version:
                    _run_script(conn, script)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={latest}")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT first; run statement by statement inside our transaction.
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction. BEGIN IMMEDIATE takes the write lock up front, so a
    transaction that reads then writes never fails half-way on a lock upgrade (which
    busy_timeout cannot wait out)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def translate(exc: sqlite3.Error, where: str) -> StoreError:
    """A driver error as a :class:`StoreError` saying what to do about it."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return StoreBusy(
            f"{where}: the database stayed locked by another process "
            f"for {BUSY_TIMEOUT_MS / 1000:g}s ({text})"
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return ReadOnlyStore(f"{where}: {text}; the data directory must be writable")
    if "malformed" in lowered or "not a database" in lowered:
        return CorruptDatabase(where, text)
    return StoreError(f"{where}: {text}")
