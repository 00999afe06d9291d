"""The SQLite store: schema and migrations, refusing unusable files, leases, keys, events."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regen.retry import ConfigError
from regen.store import (
    AddEvent,
    CorruptDatabase,
    DatabaseUnusable,
    NewRun,
    NotARegenDatabase,
    ReadOnlyStore,
    RunStatus,
    SchemaTooNew,
    SQLiteStore,
    StepStatus,
    StoreError,
    _queries,
    open_store,
    shown_location,
)
from regen.store._sqlite_db import APPLICATION_ID, latest_version


def _normal_sql(sql: str | None) -> str:
    """A statement's text without comments and with its whitespace normalised."""
    text = re.sub(r"--[^\n]*", " ", sql or "")
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    text = re.sub(r"\s*([(),])\s*", r"\1", text)
    return " ".join(text.split())


def _structure(path: Path) -> dict[str, object]:
    """Everything that makes up a database's schema, comparable between two files: per
    table its columns (types, NOT NULL, defaults, keys), indexes (unique or not, their
    columns, where they come from) and foreign keys; every schema object's SQL; the
    schema version."""
    conn = sqlite3.connect(path)
    try:
        master = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        tables = [name for type_, name, _, _ in master if type_ == "table"]

        def indexes(table: str) -> list[tuple[object, ...]]:
            found = []
            for _, name, unique, origin, partial in conn.execute(
                f"PRAGMA index_list({table!r})"
            ).fetchall():
                columns = conn.execute(f"PRAGMA index_xinfo({name!r})").fetchall()
                # Auto-indexes (UNIQUE, PRIMARY KEY) are compared by what they cover.
                label = "auto" if name.startswith("sqlite_autoindex_") else name
                found.append((label, unique, origin, partial, columns))
            return sorted(found, key=repr)

        return {
            "objects": [(t, n, tbl, _normal_sql(sql)) for t, n, tbl, sql in master],
            "columns": {t: conn.execute(f"PRAGMA table_xinfo({t!r})").fetchall() for t in tables},
            "indexes": {t: indexes(t) for t in tables},
            "foreign_keys": {
                t: conn.execute(f"PRAGMA foreign_key_list({t!r})").fetchall() for t in tables
            },
            "without_rowid": {
                t: conn.execute("SELECT wr FROM pragma_table_list WHERE name = ?", (t,)).fetchone()
                for t in tables
            },
            "version": conn.execute("PRAGMA user_version").fetchone()[0],
            "application_id": conn.execute("PRAGMA application_id").fetchone()[0],
        }
    finally:
        conn.close()


def _last_holding(migrations: list[tuple[int, str]], replace: tuple[str, str] | None) -> int:
    """The number of the last migration whose script holds the text to replace (the one
    where that part of the schema was last written)."""
    if replace is None:
        return -1
    holding = [number for number, text in migrations if replace[0] in text]
    assert holding, f"no migration holds {replace[0]!r}"
    return holding[-1]


def _migrated(
    path: Path, replace: tuple[str, str] | None = None, *, upto: int | None = None
) -> Path:
    """A database built by running every migration script in order (``replace``: an
    edit made first to the last script holding that text; ``upto``: stop after that
    migration, leaving an older schema)."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrations = _queries.migrations("sqlite")
    edited = _last_holding(migrations, replace)
    try:
        for number, text in migrations[:upto]:
            script = text
            if replace is not None and number == edited:
                script = script.replace(*replace)
            conn.executescript(script)
            conn.execute(f"PRAGMA user_version={number}")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    finally:
        conn.close()
    return path


def test_a_database_built_from_migrations_equals_one_built_from_the_schema(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "fresh.db").close_now()
    migrated = _migrated(tmp_path / "migrated.db")
    SQLiteStore(migrated).close_now()  # opening brings it up to date (nothing to do here)
    fresh = _structure(tmp_path / "fresh.db")
    assert fresh == _structure(migrated)
    assert fresh["version"] == latest_version()
    assert fresh["indexes"]["runs"]  # the comparison covers indexes and unique constraints
    assert fresh["foreign_keys"]["items"]


@pytest.mark.parametrize(
    "change",
    [
        ("    UNIQUE (flow, business_key)\n", "    CHECK (1)\n"),  # the unique key dropped
        ("CREATE INDEX runs_by_created ON runs (created_at);", ""),  # an index dropped
        ("ON runs (status, created_at)", "ON runs (created_at, status)"),  # columns swapped
        ("cancel_requested INTEGER NOT NULL DEFAULT 0", "cancel_requested INTEGER NOT NULL"),
        ("REFERENCES runs (key) ON DELETE CASCADE,\n    step", "REFERENCES runs (key),\n    step"),
        (
            ") WITHOUT ROWID;\n\nCREATE INDEX artifact_refs_by_run",
            ");\n\nCREATE INDEX artifact_refs_by_run",
        ),
    ],
    ids=["unique", "index", "index-columns", "default", "cascade", "without-rowid"],
)
def test_the_schema_comparison_notices_a_changed_constraint(
    tmp_path: Path, change: tuple[str, str]
) -> None:
    SQLiteStore(tmp_path / "fresh.db").close_now()
    changed = _migrated(tmp_path / "changed.db", replace=change)
    assert _structure(tmp_path / "fresh.db") != _structure(changed)


def test_a_corrupt_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    path.write_bytes(b"this is not a database at all" * 100)
    before = path.read_bytes()
    with pytest.raises(CorruptDatabase, match="not an SQLite database"):
        SQLiteStore(path)
    assert path.read_bytes() == before


def test_a_damaged_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    SQLiteStore(path).close_now()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # keep the header, wreck the schema page
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with pytest.raises(CorruptDatabase, match="nothing was changed"):
        SQLiteStore(path)
    assert path.read_bytes() == bytes(data)


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    SQLiteStore(path).close_now()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={latest_version() + 1}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew, match="newer regen"):
        SQLiteStore(path)
    assert path.read_bytes() == before


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_auto_upgrade_off_leaves_an_older_schema_to_regen_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = _migrated(tmp_path / "regen.db", upto=latest_version() - 1)
    monkeypatch.setenv("REGEN_DB_AUTO_UPGRADE", "0")
    with pytest.raises(StoreError, match=r"schema version \d+, .*run `regen db upgrade`"):
        SQLiteStore(older)
    assert _version(older) == latest_version() - 1
    with pytest.raises(StoreError, match="no regen schema yet"):
        SQLiteStore(tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()
    SQLiteStore(older, upgrade=True).close_now()  # what `regen db upgrade` does
    assert _version(older) == latest_version()
    SQLiteStore(older).close_now()  # up to date: nothing left to refuse


def test_an_unreadable_auto_upgrade_setting_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGEN_DB_AUTO_UPGRADE", "sometimes")
    with pytest.raises(ConfigError, match="REGEN_DB_AUTO_UPGRADE"):
        SQLiteStore(tmp_path / "regen.db")
    assert not (tmp_path / "regen.db").exists()


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(NotARegenDatabase):
        SQLiteStore(path)


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A directory this process cannot write: chmod for a normal user; a read-only
    mount for root (which ignores permission bits)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot make a read-only directory as root here: {done.stderr!r}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_data_directory_is_a_clear_error(read_only_dir: Path) -> None:
    with pytest.raises(ReadOnlyStore, match=r"read-only.*REGEN_HOME"):
        SQLiteStore(read_only_dir / "regen.db")
    with pytest.raises(ReadOnlyStore, match="cannot create the data directory"):
        SQLiteStore(read_only_dir / "sub" / "regen.db")
    assert list(read_only_dir.iterdir()) == []


def test_open_store_reads_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGEN_DATABASE_URL", raising=False)
    store = open_store()
    try:
        assert store.location.endswith("home/regen.db")
    finally:
        store.close_now()
    with pytest.raises(ConfigError, match="unknown scheme"):
        open_store("mysql://user:secret@host/db")
    with pytest.raises(ConfigError, match=r"not a URL.*set by REGEN_DATABASE_URL") as no_scheme:
        open_store("user:secret@host/db")
    assert "secret" not in str(no_scheme.value)
    with pytest.raises((ConfigError, StoreError)) as info:  # no server there
        open_store("postgresql://user:secret@host/db")
    assert "secret" not in str(info.value)


def test_a_database_is_shown_as_its_store_names_it_and_never_with_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    store = SQLiteStore("data/regen.db")
    try:
        assert shown_location("sqlite:///data/regen.db") == store.location
        assert store.location == f"sqlite:///{tmp_path.resolve() / 'data' / 'regen.db'}"
    finally:
        store.close_now()
    shown = shown_location("postgresql://me:hunter2@db.internal:5432/regen")
    assert shown == "postgresql://me@db.internal:5432/regen"


# --- an older database brought up to date ----------------------------------------------------


def _version_1(path: Path) -> None:
    """A database at schema version 1, as regen 0.1 left it: a run whose first step
    succeeded in a row that also started the second (never projected into ``steps``),
    whose second step failed, and which was then retried (a projection)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(_queries.migrations("sqlite")[0][1])
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA user_version=1")
    steps = json.dumps([["fetch", "step"], ["draw", "map"], ["publish", "step"]])
    conn.execute(
        "INSERT INTO runs (key, id, flow, params, steps, status, created_at, updated_at, "
        "retry_count, max_retries, executions, projected_seq) "
        "VALUES (1, 'r1', 'f', '{}', ?, 'failed', 1, 9, 0, 2, 1, 0)",
        (steps,),
    )
    rows = [  # (seq, type, data, position, state, output, error, next)
        (1, "run.queued", "{}", None, None, None, None, None),
        (2, "run.started", "{}", None, None, None, None, None),
        (3, "step.started", '{"step":"fetch"}', 0, "running", None, None, None),
        (4, "step.succeeded", '{"step":"fetch"}', 0, "succeeded", '"papers"', None, 1),
        (6, "step.failed", '{"step":"draw"}', 1, "failed", None, '{"type":"X"}', None),
        (7, "run.failed", "{}", None, None, None, None, None),
    ]
    for seq, type_, data, position, state, output, error, started in rows:
        conn.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((1 << 32) | seq, float(seq), type_, data, position, state, output, error, started),
        )
    conn.execute(
        "INSERT INTO items (run, step, idx, status, output) VALUES (1, 'draw', 0, 'succeeded', '1')"
    )
    conn.close()


async def test_a_version_1_database_is_brought_up_to_date_with_nothing_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "regen.db"
    _version_1(path)
    store = SQLiteStore(path)
    try:
        events = await store.read_events("r1")
        assert [(e.seq, e.type) for e in events] == [
            (1, "run.queued"),
            (2, "run.started"),
            (3, "step.started"),
            (4, "step.succeeded"),
            (5, "step.started"),  # the second event the shared row stood for
            (6, "step.failed"),
            (7, "run.failed"),
        ]
        assert events[4].data == {"step": "draw", "kind": "map"}
        steps = await store.get_steps("r1")
        assert [(s.name, s.status, s.output) for s in steps] == [
            ("fetch", StepStatus.SUCCEEDED, "papers"),
            ("draw", StepStatus.FAILED, None),
            ("publish", StepStatus.PENDING, None),
        ]
        assert steps[1].error == {"type": "X"}
        run = await store.retry_run("r1", 10.0)  # resumable as it was
        assert run.status is RunStatus.QUEUED
        assert [(i.idx, i.status) for i in await store.get_items("r1", "draw")] == [
            (0, "succeeded")
        ]
        assert (await store.read_events("r1"))[-1].seq == 8
    finally:
        await store.close()


# --- damaged files and set-ups ---------------------------------------------------------------


def _database_with_runs(path: Path, runs: int = 200) -> None:
    store = SQLiteStore(path)

    async def fill() -> None:
        for i in range(runs):
            await store.create_run(
                NewRun(f"r{i}", "f", None, None, '"' + "x" * 500 + '"', (("a", "step"),)), 1.0
            )
        await store.close()

    asyncio.run(fill())
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def test_a_truncated_database_is_refused_untouched_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    _database_with_runs(path)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 1000)
    before = path.read_bytes()
    with pytest.raises(CorruptDatabase, match=r"regen db check.*restore") as info:
        SQLiteStore(path)
    assert "pages" in str(info.value)
    assert path.read_bytes() == before
    assert not Path(str(path) + "-wal").exists()


def test_a_database_damaged_in_the_middle_stops_every_write_once_found(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    _database_with_runs(path)
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(b"\xa5" * 8192)

    async def use() -> list[str]:
        store = SQLiteStore(path)  # the cheap checks pass: the size is right
        found: list[str] = []
        try:
            for i in range(50):
                try:
                    await store.create_run(NewRun(f"n{i}", "f", None, None, "{}", ()), 2.0)
                    await store.list_runs(limit=1000)
                except CorruptDatabase as exc:
                    found.append(str(exc))
            assert await store.check() != []
        finally:
            await store.close()
        return found

    found = asyncio.run(use())
    assert found, "the damage was never noticed"
    assert all("regen db check" in message for message in found)
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        made = conn.execute("SELECT count(*) FROM runs WHERE id LIKE 'n%'").fetchone()[0]
    except sqlite3.DatabaseError:
        made = 0
    finally:
        conn.close()
    assert made <= 1  # once found, nothing more was written to it


def test_a_directory_where_the_database_should_be_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "regen.db").mkdir()
    with pytest.raises(DatabaseUnusable, match="is a directory"):
        SQLiteStore(tmp_path / "regen.db")


def test_tables_without_a_schema_version_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    SQLiteStore(path).close_now()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=0")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabase, match="no schema version"):
        SQLiteStore(path)


def test_a_missing_column_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    SQLiteStore(path).close_now()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE runs DROP COLUMN crashes")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabase, match=r"lacks column.*crashes"):
        SQLiteStore(path)


def test_a_read_only_folder_can_still_be_read(tmp_path: Path, read_only_dir: Path) -> None:
    path = tmp_path / "regen.db"
    _database_with_runs(path, runs=3)
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere; covered by the CLI test on a read-only mount")
    store = SQLiteStore(path, readonly=True)
    try:
        assert len(asyncio.run(store.list_runs())) == 3
    finally:
        store.close_now()


def test_a_store_opened_read_only_reads_and_refuses_to_write(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    _database_with_runs(path, runs=3)
    os.chmod(path, 0o444)
    store = SQLiteStore(path, readonly=True)

    async def use() -> None:
        assert len(await store.list_runs()) == 3
        with pytest.raises(ReadOnlyStore, match="read-only"):
            await store.create_run(NewRun("x", "f", None, None, "{}", ()), 1.0)

    try:
        asyncio.run(use())
    finally:
        store.close_now()
        os.chmod(path, 0o644)


# --- another process's lock ------------------------------------------------------------------

_HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


async def test_a_commit_waits_out_another_process_lock_and_the_loop_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "regen.db"
    store = SQLiteStore(path)
    try:
        await store.create_run(NewRun("r1", "f", None, None, "{}", (("a", "step"),)), 1.0)
        claimed = await store.claim("me", 100.0, 1.0)
        assert claimed is not None
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _HOLD, str(path), "3", stdout=asyncio.subprocess.PIPE
        )
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"locked"
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        result = await store.commit(claimed.lease, [AddEvent("log", "{}", 2.0)])
        ticker.cancel()
        assert result.ok  # waited for, not a failure (the lock outlived busy_timeout)
        assert ticks > 50  # the event loop kept running meanwhile
        assert await holder.wait() == 0
        assert [e.type for e in await store.read_events("r1")][-1] == "log"
    finally:
        await store.close()


async def test_event_numbers_handed_out_before_the_upgrade_are_not_handed_out_again(
    tmp_path: Path,
) -> None:
    """Version 2 numbered events with AUTOINCREMENT; its newest events deleted, the numbers
    they had must stay used after the upgrade (a follower's cursor may hold them)."""
    path = tmp_path / "regen.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in _queries.migrations("sqlite"):
        if number <= 2:
            conn.executescript(script)
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA user_version=2")
    conn.execute(
        "INSERT INTO runs (key, id, flow, params, status, created_at, updated_at) "
        "VALUES (1, 'r1', 'f', '{}', 'queued', 1, 1)"
    )
    conn.executemany(
        "INSERT INTO events (run, seq, at, type, data) VALUES (1, ?, 1, 'log', '{}')",
        [(seq,) for seq in range(1, 6)],
    )
    conn.execute("DELETE FROM events WHERE seq > 2")  # numbers 3 to 5 were handed out
    conn.close()
    store = SQLiteStore(path)
    try:
        await store.create_run(NewRun("r2", "f", None, None, "{}", (("a", "step"),)), 2.0)
        assert [e.cursor for e in await store.read_all_events()] == [1, 2, 6]
    finally:
        await store.close()


_OPEN_AT_ONCE = """
import sys, time
from regen.store import SQLiteStore
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together
SQLiteStore(sys.argv[1]).close_now()
"""


@pytest.mark.parametrize("round_", range(4))
def test_processes_opening_a_new_database_at_once_all_open_it(tmp_path: Path, round_: int) -> None:
    # One creates the schema; none may read it half-made and take the file for another
    # application's (the marks and the tables were once read in separate snapshots).
    path, start = tmp_path / "regen.db", f"{time.time() + 1.0:.3f}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT_ONCE, str(path), start],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=60)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, errors
