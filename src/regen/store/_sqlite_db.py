"""Opening an SQLite database for regen: checks, settings, schema, and error translation.

Nothing is written to a file before it is known to be regen's (or empty) and of a schema
version this code understands; a damaged, foreign or newer file is refused untouched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from regen.store import _queries
from regen.store._errors import (
    CorruptDatabase,
    DatabaseUnusable,
    NotARegenDatabase,
    ReadOnlyStore,
    SchemaTooNew,
    SchemaTooOld,
    StoreBusy,
    StoreError,
)

#: ``PRAGMA application_id`` of regen databases ("rgn1"), so a foreign file is recognised.
APPLICATION_ID = 0x72676E31
_HEADER = b"SQLite format 3\x00"
#: How long one statement waits for another process's lock before SQLite answers BUSY (the
#: store's writer thread then tries again, logging that it waits; see ``SQLiteThread``).
BUSY_TIMEOUT_MS = 2_000
#: How long opening the database waits for other processes setting it up or writing.
_OPENING_WAIT_S = 30.0
#: The page size of a new database file (an existing file keeps its own).
PAGE_SIZE = 2048
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


_DAMAGED = (
    "Run `regen db check` to see what SQLite finds, then restore the file from a backup "
    "or move it away (regen starts a new database in its place)"
)
_RESTORE = f"nothing was changed. {_DAMAGED}"


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DatabaseUnusable(
            str(path),
            "is a directory, not a database file; remove it or point REGEN_HOME elsewhere",
        )
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
        _check_contents(path)


def _check_contents(path: Path) -> None:
    """Refuse a file that is not an SQLite database, or is visibly cut short."""
    with path.open("rb") as handle:
        header = handle.read(len(_HEADER))
    if header and header != _HEADER:
        raise CorruptDatabase(
            str(path),
            "not an SQLite database (bad file header); move it away or point REGEN_HOME elsewhere",
        )
    _check_size(path)


def _check_size(path: Path) -> None:
    """Refuse a file whose size disagrees with its header (truncated or cut mid-page).

    Only when no write-ahead log waits to be replayed: a hot ``-wal`` file may hold the
    pages that make the main file whole again.
    """
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return
    with path.open("rb") as handle:
        header = handle.read(100)
    size = path.stat().st_size
    if len(header) < 100:
        if size:
            raise CorruptDatabase(str(path), f"is cut short ({size} bytes); {_RESTORE}")
        return
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count in the header is valid when its "version-valid-for" number matches
    # the file change counter (SQLite >= 3.7.0 keeps them in step).
    counted = header[92:96] == header[24:28] and pages > 0
    if page_size < 512 or size % page_size or (counted and size < pages * page_size):
        raise CorruptDatabase(
            str(path),
            f"is damaged: {size} bytes where its header says {pages} pages of "
            f"{page_size} bytes; {_RESTORE}",
        )


def connect(path: Path, *, readonly: bool = False, upgrade: bool = True) -> sqlite3.Connection:
    """Open regen's database at ``path``, at the latest schema: creating or upgrading it
    (``upgrade=False``: refusing to), or (``readonly``) only reading an existing one,
    which a read-only folder allows."""
    if readonly:
        return _connect_readonly(path)
    _check_file(path)
    if not upgrade and not path.exists():
        raise _upgrade_needed(path, 0)
    # Opening waits longer for other processes' locks than a statement does later: several
    # processes opening a new file at once take turns to set it up.
    conn = _open(path, str(path), timeout=_OPENING_WAIT_S)
    try:
        _inspect(conn, path)
        _configure_when_free(conn)
        _migrate(conn, path, upgrade=upgrade)
        _check_columns(conn, path)
        # From here, wait for another process's write lock this long before BUSY.
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except BaseException:
        conn.close()
        raise
    return conn


def _open(
    path: Path, target: str, *, uri: bool = False, timeout: float = BUSY_TIMEOUT_MS / 1000
) -> sqlite3.Connection:
    try:
        # isolation_level=None: no implicit transactions; writers say BEGIN IMMEDIATE.
        conn = sqlite3.connect(
            target,
            isolation_level=None,
            check_same_thread=False,
            timeout=timeout,
            uri=uri,
        )
    except sqlite3.Error as exc:
        raise translate(exc, str(path)) from exc
    # Rows readable by column name: no code depends on the order of a SELECT's columns.
    conn.row_factory = sqlite3.Row
    return conn


def _connect_readonly(path: Path) -> sqlite3.Connection:
    if path.is_dir():
        raise DatabaseUnusable(str(path), "is a directory, not a database file")
    if not path.exists():
        raise StoreError(
            f"{path}: no database here yet (nothing has been run with this REGEN_HOME)"
        )
    conn = _open(path, _readonly_uri(path), uri=True)
    try:
        _inspect(conn, path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != latest_version():  # older: _inspect refused a newer one
            raise SchemaTooOld(
                str(path),
                f"schema version {version}, this regen needs version {latest_version()}; "
                "reading cannot upgrade it: run `regen db upgrade` where the folder is "
                "writable",
            )
        _check_columns(conn, path)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except BaseException:
        conn.close()
        raise
    return conn


def _readonly_uri(path: Path) -> str:
    target = f"{path.resolve().as_uri()}?mode=ro"
    if not os.access(path.parent, os.W_OK):
        # SQLite cannot make the shared-memory file a WAL database is read with in a
        # folder it cannot write: read the file as it stands (nothing else can write there).
        target += "&immutable=1"
    return target


def _inspect(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse, before writing anything, a damaged, foreign or newer database."""
    try:
        # One statement, so one snapshot: read one by one, the marks could be read before
        # another process's schema creation commits and the tables after it, making
        # regen's own database look like another application's.
        # (fetchall: the statement ends here, and its read lock with it.)
        ((app_id, version, tables),) = conn.execute(
            "SELECT (SELECT application_id FROM pragma_application_id),"
            " (SELECT user_version FROM pragma_user_version),"
            " (SELECT count(*) FROM sqlite_master)"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabase(
            str(path),
            f"cannot be read as a database ({exc}); "
            "nothing was changed: restore it from a backup or move it "
            "away",
        ) from exc
    if app_id == APPLICATION_ID and version == 0 and tables:
        raise CorruptDatabase(
            str(path),
            f"holds regen's tables but no schema version (PRAGMA user_version is 0); {_RESTORE}",
        )
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


def _configure_when_free(conn: sqlite3.Connection) -> None:
    """:func:`_configure`, tried again while other processes hold the file: switching a new
    file to WAL fails at once, without waiting, while another connection reads it."""
    deadline = time.monotonic() + _OPENING_WAIT_S
    while True:
        try:
            _configure(conn)
            return
        except StoreBusy:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _configure(conn: sqlite3.Connection) -> None:
    try:
        # Set before anything else (it counts only while the file is still empty): a
        # checkpoint touches a few pages of each of a few tables, and every page changed
        # is written whole to the WAL, so a smaller page than the 4 KiB default makes the
        # commit cheaper; a larger page would make reads of many rows faster.
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        # WAL: readers never block the writer nor it them, so the CLI, a worker and the
        # server can share the file; the setting is persistent in the file.
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL: a commit survives a crash of the process (it is in the WAL file
        # before COMMIT returns) but the last ones may be lost on power loss; FULL also
        # syncs every commit. Chosen for speed; see docs/engine.md, "Durability".
        conn.execute(f"PRAGMA synchronous={synchronous_setting()}")
        # SQLite leaves foreign keys unchecked unless asked; runs cascade to their rows.
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise translate(exc, "configuring the database") from exc


def _migrate(conn: sqlite3.Connection, path: Path, *, upgrade: bool) -> None:
    """Build a new database from the schema file, or bring an older one up to date
    (``upgrade=False``: refuse to)."""
    latest = latest_version()
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == latest:
        return
    if not upgrade:
        raise _upgrade_needed(path, version)
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


def _upgrade_needed(path: Path, version: int) -> SchemaTooOld:
    found = f"schema version {version}" if version else "no regen schema yet"
    return SchemaTooOld(
        str(path),
        f"{found}, this regen needs version {latest_version()}; run `regen db upgrade`",
    )


@functools.cache
def _expected_columns() -> dict[str, tuple[str, ...]]:
    """Each table's columns as the schema file declares them (built in memory, once)."""
    conn = sqlite3.connect(":memory:")
    try:
        _run_script(conn, _queries.read("sqlite", "schema.sql"))
        return _columns(conn)
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection) -> dict[str, tuple[str, ...]]:
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {t: tuple(r[1] for r in conn.execute(f"PRAGMA table_info({t!r})")) for t in tables}


def _check_columns(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a database at the current version whose tables lack what the schema has."""
    found = _columns(conn)
    for table, columns in _expected_columns().items():
        missing = [c for c in columns if c not in found.get(table, ())]
        if missing:
            what = (
                f"table {table!r} lacks column(s) {', '.join(missing)}"
                if table in found
                else (f"table {table!r} is missing")
            )
            raise CorruptDatabase(
                str(path), f"{what} at schema version {latest_version()}; {_RESTORE}"
            )


def file_problems(path: Path) -> list[str]:
    """Everything the checks at opening and SQLite's integrity check find in the file."""
    if not path.is_file():
        return [f"{path}: no database file here"]
    try:
        _check_contents(path)
    except StoreError as exc:
        found = str(exc).split("; nothing was changed", 1)[0]
        return [found, *integrity_problems(path)]
    return integrity_problems(path)


def integrity_problems(path: Path) -> list[str]:
    """What SQLite's integrity check finds in the file (nothing: an empty list)."""
    try:
        conn = sqlite3.connect(_readonly_uri(path), uri=True)
    except sqlite3.Error as exc:
        return [str(exc)]
    try:
        rows = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()
    return [] if rows == ["ok"] else rows


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
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return CorruptDatabase(where, f"{text}; regen stops writing to it. {_DAMAGED}")
    return StoreError(f"{where}: {text}")
