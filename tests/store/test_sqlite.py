"""The SQLite store: schema and migrations, refusing unusable files, leases, keys, events."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from regen.retry import ConfigError
from regen.store import (
    AddEvent,
    Batch,
    CorruptDatabase,
    EndRun,
    EndStep,
    Lease,
    NewRun,
    NotARegenDatabase,
    ReadOnlyStore,
    RunStatus,
    SchemaTooNew,
    SQLiteStore,
    StartStep,
    StepStatus,
    _queries,
    open_store,
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


def _migrated(path: Path, replace: tuple[str, str] | None = None) -> Path:
    """A database built by running every migration script in order (``replace``: an
    edit made to the scripts first)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for number, text in _queries.migrations("sqlite"):
            script = text
            if replace is not None:
                assert replace[0] in script
                script = script.replace(*replace)
            conn.executescript(script)
            conn.execute(f"PRAGMA user_version={number}")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    finally:
        conn.close()
    return path


def test_a_database_built_from_migrations_equals_one_built_from_the_schema(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "fresh.db").close()
    migrated = _migrated(tmp_path / "migrated.db")
    SQLiteStore(migrated).close()  # opening brings it up to date (nothing to do here)
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
        (") WITHOUT ROWID;\n\n-- The items", ");\n\n-- The items"),
    ],
    ids=["unique", "index", "index-columns", "default", "cascade", "without-rowid"],
)
def test_the_schema_comparison_notices_a_changed_constraint(
    tmp_path: Path, change: tuple[str, str]
) -> None:
    SQLiteStore(tmp_path / "fresh.db").close()
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
    SQLiteStore(path).close()
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
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={latest_version() + 1}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew, match="newer regen"):
        SQLiteStore(path)
    assert path.read_bytes() == before


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
        store.close()
    with pytest.raises(ConfigError, match="unknown scheme"):
        open_store("mysql://user:secret@host/db")
    with pytest.raises(ConfigError) as info:
        open_store("postgresql://user:secret@host/db")
    assert "secret" not in str(info.value)


def _new(run_id: str, key: str | None = None) -> NewRun:
    return NewRun(run_id, "f", None, key, "{}", (("a", "step"), ("b", "step")))


def test_two_stores_never_claim_the_same_run(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    stores = [SQLiteStore(path) for _ in range(4)]
    try:
        for i in range(40):
            stores[0].create_run(_new(f"r{i}"), 1.0)
        claimed: list[str] = []
        lock = threading.Lock()

        def claim_all(store: SQLiteStore) -> None:
            while (c := store.claim("w", 30.0, 2.0)) is not None:
                with lock:
                    claimed.append(c.run.id)

        threads = [threading.Thread(target=claim_all, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(claimed) == sorted(f"r{i}" for i in range(40))
    finally:
        for s in stores:
            s.close()


def test_a_business_key_is_unique_per_flow(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "regen.db")
    try:
        _, created_a = store.create_run(_new("r1", "k"), 1.0)
        b, created_b = store.create_run(_new("r2", "k"), 1.0)
        assert created_a
        assert not created_b
        assert b.id == "r1"
        assert store.create_run(_new("r3"), 1.0)[1]
        assert store.create_run(_new("r4"), 1.0)[1]
    finally:
        store.close()


def test_writes_under_a_stale_lease_are_dropped(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "regen.db")
    try:
        store.create_run(_new("r1"), 1.0)
        first = store.claim("a", 10.0, 1.0)
        assert first is not None
        second = store.claim("b", 10.0, 20.0)  # the first lease expired at 11
        assert second is not None
        assert second.taken_over
        stale = store.commit([Batch(first.lease, [AddEvent("log", "{}", 21.0)])])
        fresh = store.commit([Batch(second.lease, [AddEvent("log", "{}", 21.0)])])
        assert [stale[0].ok, fresh[0].ok] == [False, True]
        assert store.heartbeat([first.lease], 10.0, 22.0)["r1"].ok is False
        seqs = [e.seq for e in store.read_events("r1")]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        store.close()


def test_event_sequence_numbers_are_gapless_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    store = SQLiteStore(path)
    store.create_run(_new("r1"), 1.0)
    claimed = store.claim("a", 1e9, 1.0)
    assert claimed is not None
    script = (
        "from regen.store import SQLiteStore, Batch, AddEvent, Lease\n"
        f"s = SQLiteStore({str(path)!r})\n"
        f"lease = Lease('r1', {claimed.lease.token!r}, 'a', 0)\n"
        "for i in range(50):\n"
        "    assert s.commit([Batch(lease, [AddEvent('log', '{}', 1.0)])])[0].ok\n"
        "s.close()\n"
    )
    try:
        procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
        assert [p.wait(60) for p in procs] == [0, 0, 0]
        seqs = [e.seq for e in store.read_events("r1", 0, 10_000)]
        assert len(seqs) == 152
        assert seqs == list(range(1, 153))
    finally:
        store.close()


def test_status_filters_and_paging(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "regen.db")
    try:
        for i in range(5):
            store.create_run(_new(f"r{i}"), float(i))
        assert [r.id for r in store.list_runs(limit=2)] == ["r4", "r3"]
        assert [r.id for r in store.list_runs(before=3.0, limit=2)] == ["r2", "r1"]
        assert store.list_runs(statuses=[RunStatus.RUNNING]) == []
    finally:
        store.close()


def _claimed(store: SQLiteStore, run_id: str = "r1") -> Lease:
    store.create_run(_new(run_id), 1.0)
    claimed = store.claim("a", 100.0, 1.0, run_id=run_id)
    assert claimed is not None
    return claimed.lease


def test_a_step_end_that_starts_the_next_step_reads_back_as_two_events(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "regen.db")
    try:
        lease = _claimed(store)
        assert store.commit(
            [Batch(lease, [StartStep(0, 2.0, '{"step":"a","kind":"step"}', lazy=True)])]
        )[0].ok
        assert store.commit(
            [
                Batch(
                    lease,
                    [EndStep(0, StepStatus.SUCCEEDED, 3.0, "7", None, '{"step":"a"}', True, 1)],
                )
            ]
        )[0].ok
        events = store.read_events("r1")
        assert [(e.seq, e.type, e.data) for e in events[-3:]] == [
            (3, "step.started", {"step": "a", "kind": "step"}),
            (4, "step.succeeded", {"step": "a"}),
            (5, "step.started", {"step": "b", "kind": "step"}),
        ]
        # Paging from the middle of the row: only its second event.
        assert [(e.seq, e.type) for e in store.read_events("r1", after=4)] == [(5, "step.started")]
        assert [e.seq for e in store.read_events("r1", after=2, limit=2)] == [3, 4]
        steps = store.get_steps("r1")  # nothing projected: read from the events
        assert [(s.status, s.output) for s in steps] == [
            (StepStatus.SUCCEEDED, 7),
            (StepStatus.RUNNING, None),
        ]
        assert store.commit([Batch(lease, [AddEvent("log", "{}", 4.0)])])[0].ok
        assert [e.seq for e in store.read_events("r1", after=5)] == [6]
    finally:
        store.close()


def test_a_lone_step_end_under_a_lost_lease_or_a_cancel_request(tmp_path: Path) -> None:
    path = tmp_path / "regen.db"
    store, other = SQLiteStore(path), SQLiteStore(path)
    try:
        lease = _claimed(store)
        other.request_cancel("r1", 2.0)  # another process asks: the flag only
        end = EndStep(0, StepStatus.SUCCEEDED, 3.0, "1", None, '{"step":"a"}', True, 1)
        result = store.commit([Batch(lease, [end])])[0]
        assert (result.ok, result.cancel_requested) == (True, True)  # written, and told
        assert store.get_steps("r1")[0].status is StepStatus.SUCCEEDED
        taken = other.claim("b", 100.0, 500.0, run_id="r1")  # the lease expired at 101
        assert taken is not None
        late = EndStep(1, StepStatus.SUCCEEDED, 501.0, "2", None, '{"step":"b"}', True)
        assert store.commit([Batch(lease, [late])])[0].ok is False
        assert store.get_steps("r1")[1].status is StepStatus.RUNNING  # as the first left it
    finally:
        store.close()
        other.close()


def test_step_rows_are_written_only_when_a_retry_needs_them(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "regen.db")
    try:
        lease = _claimed(store)
        assert store.commit(
            [
                Batch(
                    lease,
                    [
                        StartStep(0, 2.0, '{"step":"a","kind":"step"}', lazy=True),
                        EndStep(
                            0, StepStatus.FAILED, 3.0, None, '{"type":"X"}', '{"step":"a"}', True
                        ),
                        EndRun(RunStatus.FAILED, 3.0, '{"type":"X"}'),
                    ],
                )
            ]
        )[0].ok
        conn = sqlite3.connect(tmp_path / "regen.db")
        try:
            assert conn.execute("SELECT count(*) FROM steps").fetchone() == (0,)
            store.retry_run("r1", 4.0)
            assert conn.execute(
                "SELECT position, status FROM steps ORDER BY position"
            ).fetchall() == [(0, "pending"), (1, "pending")]
        finally:
            conn.close()
        assert [s.status for s in store.get_steps("r1")] == [StepStatus.PENDING] * 2
        assert store.step_names("r1") == [("a", "step"), ("b", "step")]
    finally:
        store.close()
