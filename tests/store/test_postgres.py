"""The PostgreSQL store beyond the contract: schema ≡ migrations, workers in several
processes, fencing under contention, LISTEN/NOTIFY, lost connections, URLs and versions.

Each test gets a database of its own (``postgres_database``); without a server these are
skipped, except in CI, where they fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.store.conftest import postgres_database
from tests.store.cutting_proxy import Cut, CuttingProxy

from regen.foundation import ConfigError
from regen.store import (
    AddEvent,
    AddItems,
    DatabaseUnreachable,
    EndItem,
    ItemStatus,
    NewRun,
    NotARegenDatabase,
    OpenItems,
    PostgresStore,
    SchemaTooNew,
    StartStep,
    StoreError,
    _queries,
    open_store,
)
from regen.store._postgres_db import latest_version, masked
from regen.store._postgres_direct import DIRECT_AFTER

psycopg = pytest.importorskip("psycopg")
STEPS = (("fetch", "step"), ("draw", "map"))


@pytest.fixture
def url() -> Iterator[str]:
    with postgres_database() as made:
        yield made


def _new(run_id: str) -> NewRun:
    return NewRun(run_id, "f", None, None, "{}", STEPS)


# --- schema and migrations ------------------------------------------------------------------


def _structure(url: str) -> dict[str, Any]:
    """Everything that makes up the schema, comparable between two databases: columns
    (type, nullability, default), constraints with their columns and rules, indexes,
    functions with their code."""
    with psycopg.connect(url) as conn:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return sorted(conn.execute(sql).fetchall(), key=repr)

        return {
            "columns": rows(
                "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, "
                "column_default FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            ),
            "constraints": rows(
                "SELECT conrelid::regclass::text, conname, contype, "
                "pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace"
            ),
            "indexes": rows(
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            ),
            "functions": rows(
                "SELECT proname, pg_get_functiondef(oid) FROM pg_proc "
                "WHERE pronamespace = 'public'::regnamespace"
            ),
            "version": conn.execute("SELECT version FROM regen_schema").fetchall(),
        }


def _last_holding(migrations: list[tuple[int, str]], replace: tuple[str, str] | None) -> int:
    """The number of the last migration whose script holds the text to replace (the one
    where that part of the schema was last written)."""
    if replace is None:
        return -1
    holding = [number for number, text in migrations if replace[0] in text]
    assert holding, f"no migration holds {replace[0]!r}"
    return holding[-1]


def _migrate(url: str, replace: tuple[str, str] | None = None) -> None:
    """Run every migration script in order (``replace``: an edit made first to the
    last script holding that text)."""
    migrations = _queries.migrations("postgres")
    edited = _last_holding(migrations, replace)
    with psycopg.connect(url, autocommit=True) as conn:
        for number, text in migrations:
            script = text
            if replace is not None and number == edited:
                script = script.replace(*replace)
            conn.execute(script.encode())
        conn.execute("INSERT INTO regen_schema (version) VALUES (%s)", (migrations[-1][0],))


def test_a_database_built_from_migrations_equals_one_built_from_the_schema(url: str) -> None:
    PostgresStore(url).close_now()
    with postgres_database() as migrated:
        _migrate(migrated)
        PostgresStore(migrated).close_now()  # opening brings it up to date (nothing to do)
        fresh = _structure(url)
        assert fresh == _structure(migrated)
    assert fresh["version"] == [(latest_version(),)]
    assert any(c[2] == "u" for c in fresh["constraints"])  # unique keys are compared
    assert any(c[2] == "f" for c in fresh["constraints"])  # and foreign keys
    assert any(f[0] == "regen_commit" for f in fresh["functions"])  # and functions


@pytest.mark.parametrize(
    "change",
    [
        ("CONSTRAINT runs_flow_business_key UNIQUE (flow, business_key)", "CHECK (true)"),
        ("CREATE INDEX runs_by_created ON runs (created_at);", ""),
        ("ON runs (status, created_at)", "ON runs (created_at, status)"),
        (
            "cancel_requested BOOLEAN NOT NULL DEFAULT FALSE",
            "cancel_requested BOOLEAN NOT NULL",
        ),
        ("REFERENCES runs (key) ON DELETE CASCADE,\n    step", "REFERENCES runs (key),\n    step"),
        ("quota_remaining DOUBLE PRECISION", "quota_remaining REAL"),
        ("SET status = 'running', started_at = w.at,", "SET status = 'running', started_at = 0,"),
    ],
    ids=["unique", "index", "index-columns", "default", "cascade", "type", "function"],
)
def test_the_schema_comparison_notices_a_changed_constraint(
    url: str, change: tuple[str, str]
) -> None:
    PostgresStore(url).close_now()
    with postgres_database() as migrated:
        _migrate(migrated, replace=change)
        assert _structure(url) != _structure(migrated)


def test_a_newer_schema_is_refused_untouched(url: str) -> None:
    PostgresStore(url).close_now()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE regen_schema SET version = 99")
    with pytest.raises(SchemaTooNew, match="newer regen"):
        PostgresStore(url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM regen_schema").fetchone() == (99,)


def test_a_database_of_another_application_is_refused(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (id int)")
    with pytest.raises(NotARegenDatabase, match="not regen's"):
        PostgresStore(url)


# --- the URL ---------------------------------------------------------------------------------


def test_the_store_is_chosen_by_url_and_its_location_hides_the_password(url: str) -> None:
    store = open_store(url)
    try:
        assert isinstance(store, PostgresStore)
        assert store.location == url
    finally:
        store.close_now()
    with pytest.raises(StoreError) as info:
        open_store("postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere")
    assert "s3cret-pw" not in str(info.value)
    assert "cannot reach PostgreSQL" in str(info.value)


def test_a_shown_url_loses_its_passwords_and_keeps_the_rest_as_written() -> None:
    assert (
        masked("postgresql://u:pw@db:5432/x?application_name=a%20b&Password=q&sslmode=require")
        == "postgresql://u@db:5432/x?application_name=a%20b&sslmode=require"
    )
    assert masked("postgresql://db/x?options=-c%20statement_timeout%3D5s") == (
        "postgresql://db/x?options=-c%20statement_timeout%3D5s"
    )
    assert masked("postgresql://db/x?sslpassword=k&password") == "postgresql://db/x"


def test_a_missing_postgres_extra_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'regen\[postgres\]'"):
        open_store("postgresql://user:pw@127.0.0.1/db")


# --- workers in several processes -------------------------------------------------------------

_CLAIMER = """
import asyncio, json, sys
from regen.store import PostgresStore

async def main() -> None:
    store = PostgresStore(sys.argv[1])
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # both start claiming at once
    got = []
    while (claimed := await store.claim(sys.argv[2], 60.0, 100.0)) is not None:
        got.append(claimed.run.id)
    await store.close()
    print(json.dumps(got))

asyncio.run(main())
"""


async def test_two_processes_claiming_at_once_never_take_the_same_run(url: str) -> None:
    store = PostgresStore(url)
    try:
        for i in range(60):
            await store.create_run(_new(f"r{i:02}"), float(i))
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CLAIMER,
                url,
                f"w{n}",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for n in range(2)
        ]
        for worker in workers:
            assert worker.stdout is not None
            assert (await worker.stdout.readline()).strip() == b"ready"
        outputs = await asyncio.wait_for(
            asyncio.gather(*(w.communicate(b"go\n") for w in workers)), 30
        )
        claimed = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        assert sorted(claimed[0] + claimed[1]) == [f"r{i:02}" for i in range(60)]
        assert not set(claimed[0]) & set(claimed[1])
        runs = await store.list_runs(limit=100)
        assert {r.lease_owner for r in runs} <= {"w0", "w1"}
        assert all(r.executions == 1 for r in runs)
    finally:
        await store.close()


async def test_a_stale_holder_racing_a_takeover_writes_nothing_after_it(url: str) -> None:
    first, second = PostgresStore(url), PostgresStore(url)
    try:
        await first.create_run(_new("r1"), 1.0)
        old = await first.claim("old", 10.0, 1.0)
        assert old is not None

        async def stale_writes() -> list[bool]:
            outcomes = []
            for i in range(30):
                done = await first.commit(old.lease, [AddEvent("log", json.dumps({"i": i}), 20.0)])
                outcomes.append(done.ok)
            return outcomes

        writes = asyncio.ensure_future(stale_writes())
        await asyncio.sleep(0)
        taken = await second.claim("new", 10.0, 20.0, run_id="r1")  # the lease expired at 11
        outcomes = await writes
        assert taken is not None
        assert taken.taken_over
        events = await second.read_events("r1")
        started = [e.seq for e in events if e.type == "run.started"][-1]
        assert not [e for e in events if e.seq > started]  # nothing of the stale holder's
        assert outcomes.count(True) == len([e for e in events if e.type == "log"])
        assert outcomes[-1] is False
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
    finally:
        await first.close()
        await second.close()


async def test_a_follower_of_every_run_misses_no_event_under_concurrent_commits(
    url: str,
) -> None:
    writers = [PostgresStore(url) for _ in range(3)]
    reader = PostgresStore(url)
    try:
        leases = []
        for n, store in enumerate(writers):
            await store.create_run(_new(f"r{n}"), 1.0)
            claimed = await store.claim("w", 100.0, 1.0, run_id=f"r{n}")
            assert claimed is not None
            leases.append(claimed.lease)
        done = asyncio.Event()

        async def write(store: PostgresStore, n: int) -> None:
            for i in range(40):
                await store.commit(leases[n], [AddEvent("log", json.dumps({"i": i}), 2.0)])

        async def follow() -> list[int]:
            seen: list[int] = []
            cursor = 0
            while True:
                finished = done.is_set()
                for event in await reader.read_all_events(after=cursor):
                    seen.append(event.cursor)
                    cursor = event.cursor
                if finished:
                    return seen
                await asyncio.sleep(0.001)

        following = asyncio.ensure_future(follow())
        await asyncio.gather(*(write(s, n) for n, s in enumerate(writers)))
        done.set()
        seen = await following
        every = [e.cursor for e in await reader.read_all_events(limit=10_000)]
        assert seen == every  # in order, none skipped, none twice
        assert len(every) == 3 * (2 + 40)
    finally:
        for store in [*writers, reader]:
            await store.close()


# --- notifications and lost connections -----------------------------------------------------


async def test_a_commit_in_another_store_wakes_a_listener_through_notify(url: str) -> None:
    listening, writing = PostgresStore(url), PostgresStore(url)
    try:
        heard = threading.Event()
        runs: list[str] = []

        def listener(run_id: str) -> None:
            runs.append(run_id)
            heard.set()

        listening.add_listener(listener)
        assert await asyncio.to_thread(listening.listening.wait, 10)
        await writing.create_run(_new("r1"), 1.0)
        assert await asyncio.to_thread(heard.wait, 10)
        assert runs == ["r1"]  # its own commits are not heard twice
        await listening.create_run(_new("r2"), 1.0)
        assert runs == ["r1", "r2"]  # told at once, not through the server
    finally:
        await listening.close()
        await writing.close()


async def test_a_map_steps_items_opened_in_another_store_wake_its_idle_workers(url: str) -> None:
    idle, executing = PostgresStore(url), PostgresStore(url)
    try:
        told: list[str] = []
        heard = threading.Event()

        def queued(flow: str) -> None:
            if flow:  # "": a wake-up for any flow (the store began to listen)
                told.append(flow)
                heard.set()

        idle.add_queue_listener(queued)
        assert await asyncio.to_thread(idle.listening.wait, 10)
        await executing.create_run(_new("r1"), 1.0)
        claimed = await executing.claim("w", 100.0, 1.0, run_id="r1")
        assert claimed is not None
        assert await asyncio.to_thread(heard.wait, 10)
        heard.clear()
        assert told == ["f"]  # the run queued
        rows = ((0, None, '"a"'), (1, None, '"b"'))
        start = StartStep(1, 2.0, '{"step":"draw","kind":"map"}')
        await executing.commit(claimed.lease, [start, AddItems("draw", rows)])
        await executing.commit(claimed.lease, [OpenItems(1, None, 2)])
        assert await asyncio.to_thread(heard.wait, 10)
        assert told == ["f", "f"]  # the items opened, not the commit before
        heard.clear()
        taken = await executing.claim_items(
            "w", "t1", 100.0, 3.0, limit=2, run_id="r1", step="draw"
        )
        assert taken is not None
        assert await executing.release_items(taken.lease) == 2
        assert await asyncio.to_thread(heard.wait, 10)
        assert told == ["f", "f", "f"]  # items given back
    finally:
        await idle.close()
        await executing.close()


async def test_a_lost_database_connection_is_replaced_and_work_goes_on(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="regen.store")
    store = PostgresStore(url)
    try:
        await store.create_run(_new("r1"), 1.0)
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        run = await store.get_run("r1")  # on a new connection
        assert run is not None
        assert any("trying again" in r.getMessage() for r in caplog.records)
        assert (await store.claim("w", 10.0, 2.0)) is not None
    finally:
        await store.close()


# --- the command line -----------------------------------------------------------------------


def _regen(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regen.cli", *args],
        env={**os.environ, "REGEN_DATABASE_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


_LEFT_OPEN = """
import sys
from regen.engine import Engine, Flow
flow = Flow("f")
flow.step(name="a")(lambda ctx: 1)
engine = Engine(sys.argv[1], home=sys.argv[2])
print(engine.sync.start(flow).run.status)
"""


def test_an_engine_left_open_exits_quietly(url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LEFT_OPEN, url, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "queued\n"), done.stderr
    assert done.stderr == ""  # the pool's tasks were not left pending ("Task was destroyed…")


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_regen_db_upgrade_creates_the_schema_that_auto_upgrade_off_refuses_to(
    url: str, tmp_path: Path, where: str
) -> None:
    # trust auth ignores the password: it is here to show it is never printed
    secret = (
        url.replace("postgres@", "postgres:hunter2-pw@")
        if where == "userinfo"
        else f"{url}?application_name=walk&password=hunter2-pw"
    )
    off = {"REGEN_DB_AUTO_UPGRADE": "0", "REGEN_HOME": str(tmp_path)}
    refused = _regen(secret, "runs", **off)
    assert refused.returncode == 1
    assert "run `regen db upgrade`" in refused.stderr
    upgraded = _regen(secret, "db", "upgrade", **off)
    assert upgraded.returncode == 0, upgraded.stderr
    checked = _regen(secret, "db", "check", "--json", **off)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["ok"] is True
    listed = _regen(secret, "runs", "--json", **off)
    assert listed.returncode == 0, listed.stderr
    everything = refused.stderr + upgraded.stdout + checked.stdout + listed.stdout
    assert "hunter2-pw" not in everything
    assert "…" not in everything  # not masked: left out
    assert "postgres@127.0.0.1" in upgraded.stdout


def test_db_check_reports_a_schema_behind_or_changed_by_hand_with_what_to_do(
    url: str, tmp_path: Path
) -> None:
    empty = _regen(url, "db", "check", REGEN_HOME=str(tmp_path))
    assert empty.returncode == 1
    assert "not usable as it is" in empty.stdout
    assert "no regen schema yet" in empty.stdout
    assert "damaged" not in empty.stdout
    PostgresStore(url).close_now()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE regen_schema SET version = version - 1")
    behind = _regen(url, "db", "check", "--json", REGEN_HOME=str(tmp_path))
    assert behind.returncode == 1
    report = json.loads(behind.stdout)  # JSON, as asked, though the store would not open
    assert report["ok"] is False
    assert "run `regen db upgrade`" in report["problems"][0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE regen_schema SET version = version + 1")
        conn.execute("ALTER TABLE steps DROP COLUMN items_total")
    changed = _regen(url, "db", "check", REGEN_HOME=str(tmp_path))
    assert changed.returncode == 1
    assert "table 'steps' lacks column(s) items_total" in changed.stdout
    assert "restore the database from a backup" in changed.stdout


async def test_the_check_finds_a_column_missing_from_the_schema(url: str) -> None:
    store = PostgresStore(url)
    try:
        assert await store.check() == []
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE items DROP COLUMN cached")
        assert await store.check() == ["table 'items' lacks column(s) cached"]
    finally:
        await store.close()


@pytest.mark.parametrize("round_", range(3))
def test_processes_opening_an_empty_database_at_once_create_the_schema_once(
    round_: int,
) -> None:
    # Workers started together on a new database: one creates the schema, the others wait
    # for it under the schema lock and then see it (none fails with "already exists", or
    # takes it for another application's).
    with postgres_database() as made:
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def open_one() -> None:
            barrier.wait()
            try:
                PostgresStore(made).close_now()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with psycopg.connect(made) as conn:
            assert conn.execute("SELECT version FROM regen_schema").fetchall() == [
                (latest_version(),)
            ]


# --- regen worker processes -----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
#: This checkout's regen first (not one installed elsewhere), and its tests' flows.
PYTHONPATH = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
_WORKER = (sys.executable, "-m", "regen.cli", "worker")
_PYTEST = (sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider")


def _worker(url: str, home: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*_WORKER, "--flow", "tests.cli.flows:demo", "--poll", "0.05"],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": PYTHONPATH,
            "REGEN_DATABASE_URL": url,
            "REGEN_HOME": str(home),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return found


def test_a_killed_workers_run_is_taken_over_by_another_worker_process(
    url: str, tmp_path: Path
) -> None:
    lease = 3.0
    env = {"CLI_TEST_ITEM_DELAY": "0.4", "REGEN_LEASE_TTL_S": str(lease)}
    queued = _regen(
        url,
        "run",
        "tests.cli.flows:demo",
        "--queue",
        "-p",
        "count=8",
        "-p",
        "fail_item=99",
        REGEN_HOME=str(tmp_path),
        PYTHONPATH=PYTHONPATH,
    )
    assert queued.returncode == 0, queued.stderr
    first = _worker(url, tmp_path, **env)
    second: subprocess.Popen[str] | None = None
    try:
        with psycopg.connect(url, autocommit=True) as db:

            def one(sql: str) -> Any:
                row = db.execute(sql).fetchone()
                return None if row is None else row[0]

            _until(lambda: one("SELECT count(*) FROM items WHERE status = 'succeeded'") >= 2)
            owner = one("SELECT lease_owner FROM runs")
            second = _worker(url, tmp_path, **env)
            first.kill()  # SIGKILL: no release, the lease must expire
            killed = time.monotonic()
            first.communicate(timeout=30)
            _until(lambda: one("SELECT lease_owner FROM runs") not in (owner, None))
            recovery = time.monotonic() - killed
            print(f"take-over {recovery:.2f}s after the kill (lease {lease}s, poll 0.05s)")
            assert recovery <= lease + 0.05 + 1.5
            _until(lambda: one("SELECT status FROM runs") == "succeeded", 60)
            assert one("SELECT executions FROM runs") == 2
            assert one("SELECT crashes FROM runs") == 1
            succeeded = db.execute(
                "SELECT data FROM events WHERE type = 'item.succeeded'"
            ).fetchall()
            done = [json.loads(row[0])["item"] for row in succeeded]
            assert len(done) == len(set(done)) == 8  # none done twice, the quota exact
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=30)


def test_an_idle_worker_starts_a_run_queued_by_another_process_at_once(
    url: str, tmp_path: Path
) -> None:
    poll = 30.0  # without a wake-up, the run would wait this long
    worker = subprocess.Popen(
        [*_WORKER, "--flow", "tests.cli.flows:demo", "--poll", str(poll)],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": PYTHONPATH,
            "REGEN_DATABASE_URL": url,
            "REGEN_HOME": str(tmp_path),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url, autocommit=True) as db:

            def one(sql: str, *args: Any) -> Any:
                row = db.execute(sql, args).fetchone()
                return None if row is None else row[0]

            listening = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query LIKE %s"
            _until(lambda: one(listening, name, "LISTEN regen_queue%"), 60)
            time.sleep(1.0)  # its first look at the queue is over: it waits for the next
            queued = _regen(
                url,
                "run",
                "tests.cli.flows:demo",
                "--queue",
                "-p",
                "count=1",
                "-p",
                "fail_item=99",
                REGEN_HOME=str(tmp_path),
                PYTHONPATH=PYTHONPATH,
            )
            assert queued.returncode == 0, queued.stderr
            _until(lambda: one("SELECT started_at FROM runs"), 10)
            wait = one("SELECT started_at - created_at FROM runs")
            print(f"queued to started: {wait * 1000:.0f} ms (poll {poll:.0f} s)")
            assert wait < 2.0
            _until(lambda: one("SELECT status FROM runs") == "succeeded", 30)
    finally:
        worker.terminate()
        worker.communicate(timeout=30)


def test_an_idle_worker_carries_out_an_automatic_retry_when_it_falls_due(
    url: str, tmp_path: Path
) -> None:
    poll = 30.0  # nothing notifies of a retry falling due: the worker times its wait
    env = {"REGEN_DATABASE_URL": url, "REGEN_HOME": str(tmp_path), "PYTHONPATH": PYTHONPATH}
    worker = subprocess.Popen(
        [*_WORKER, "--flow", "tests.cli.flows:flaky", "--poll", str(poll)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(url, autocommit=True) as db:

            def one(sql: str) -> Any:
                row = db.execute(sql).fetchone()
                return None if row is None else row[0]

            listening = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN regen_q%'"
            _until(lambda: one(listening), 60)
            queued = _regen(
                url, "run", "tests.cli.flows:flaky", "--queue", REGEN_HOME=str(tmp_path),
                PYTHONPATH=PYTHONPATH, CLI_TEST_RETRY_DELAY="1.0",
            )  # fmt: skip
            assert queued.returncode == 0, queued.stderr
            _until(lambda: one("SELECT retry_at FROM runs"), 30)  # failed, its retry due in 1 s
            failed_at = one("SELECT finished_at FROM runs")
            _until(lambda: one("SELECT auto_retries FROM runs") == 1, 10)
            retried_after = one("SELECT updated_at FROM runs") - failed_at
            print(f"automatic retry {retried_after:.2f} s after the failure (delay 1 s)")
            assert retried_after < 3.0
    finally:
        worker.terminate()
        worker.communicate(timeout=30)


# --- the test set-up itself -------------------------------------------------------------------


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), ("", "1 skipped")])
def test_without_a_server_postgres_tests_fail_in_ci_and_are_skipped_elsewhere(
    ci: str, outcome: str
) -> None:
    done = subprocess.run(
        [*_PYTEST, "tests/store/test_contract.py", "-k", "postgres and a_new_run_is_queued"],
        cwd=ROOT,
        env={
            **os.environ,
            "CI": ci,
            "REGEN_TEST_POSTGRES_URL": "postgresql://postgres@127.0.0.1:1/test",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert outcome in summary, done.stdout
    assert done.returncode == (1 if ci else 0)
    assert "PostgreSQL at postgresql://postgres@127.0.0.1:1/test is not usable" in done.stdout


def _through(url: str, port: int) -> str:
    """``url`` with its port replaced (to go through a relay on loopback)."""
    head, _, tail = url.partition("@")
    _, _, rest = tail.partition("/")
    return f"{head}@127.0.0.1:{port}/{rest}"


@pytest.mark.parametrize("delivered", [True, False], ids=["it-landed", "it-did-not"])
@pytest.mark.parametrize(
    "earlier", [0, DIRECT_AFTER + 1], ids=["first-commit", "on-the-loops-own-connection"]
)
async def test_a_connection_lost_during_a_commit_neither_loses_nor_repeats_it(
    url: str, delivered: bool, earlier: int
) -> None:
    with CuttingProxy("127.0.0.1", 5432) as proxy:
        store = PostgresStore(_through(url, proxy.port))
        try:
            await store.create_run(_new("r1"), 1.0)
            claimed = await store.claim("w", 100.0, 1.0)
            assert claimed is not None
            for n in range(earlier):
                assert (await store.commit(claimed.lease, [AddEvent("log", f"{n}", 2.0)])).ok
            # The connection fails as the commit goes out: whether the server had
            # committed it or not, this process cannot tell from the answer.
            proxy.cut = Cut(b"regen_commit", delivered)
            outcome = await store.commit(claimed.lease, [AddEvent("log", '{"once":true}', 2.0)])
            assert proxy.cuts == 1
            assert outcome.ok
            logs = [e for e in await store.read_events("r1") if e.type == "log"]
            assert [e.data for e in logs] == [*range(earlier), {"once": True}]
        finally:
            await store.close()


@pytest.mark.parametrize("delivered", [True, False], ids=["it-landed", "it-did-not"])
async def test_a_connection_lost_during_a_claim_takes_the_run_once(
    url: str, delivered: bool
) -> None:
    with CuttingProxy("127.0.0.1", 5432) as proxy:
        store = PostgresStore(_through(url, proxy.port))
        try:
            await store.create_run(_new("r1"), 1.0)
            proxy.cut = Cut(b"regen_claim", delivered)
            claimed = await store.claim("w", 100.0, 1.0)
            assert proxy.cuts == 1
            assert claimed is not None
            assert not claimed.taken_over
            assert (await store.commit(claimed.lease, [AddEvent("log", "{}", 2.0)])).ok
            run = await store.get_run("r1")
            assert run is not None
            assert run.executions == 1
            started = [e for e in await store.read_events("r1") if e.type == "run.started"]
            assert len(started) == 1
        finally:
            await store.close()


@pytest.mark.parametrize("delivered", [True, False], ids=["it-landed", "it-did-not"])
async def test_a_connection_lost_during_a_claim_of_items_is_recognised_by_its_token(
    url: str, delivered: bool
) -> None:
    with CuttingProxy("127.0.0.1", 5432) as proxy:
        store = PostgresStore(_through(url, proxy.port))
        try:
            await store.create_run(_new("r1"), 1.0)
            claimed = await store.claim("w", 100.0, 1.0)
            assert claimed is not None
            start = StartStep(1, 2.0, '{"step":"draw","kind":"map"}')
            rows = tuple((i, None, f'"{i}"') for i in range(3))
            opened = [start, AddItems("draw", rows), OpenItems(1, None, 3)]
            assert (await store.commit(claimed.lease, opened)).ok
            # The connection fails as the claim's COMMIT goes out: the claim is neither
            # lost (its items leased to nobody until their lease lapses) nor made twice.
            proxy.cut = Cut(b"COMMIT", delivered)
            items = await store.claim_items("h", "t1", 100.0, 3.0, limit=2)
            assert proxy.cuts == 1
            assert items is not None
            assert [(i.idx, i.worker) for i in items.items] == [(0, "h"), (1, "h")]
            assert (items.run.id, items.step.name) == ("r1", "draw")
            assert (items.lease.run_id, items.lease.step, items.lease.token) == ("r1", "draw", "t1")
            assert await store.count_items("r1", "draw") == {
                ItemStatus.RUNNING: 2,
                ItemStatus.PENDING: 1,
            }
            end = EndItem("draw", 0, ItemStatus.SUCCEEDED, 4.0, output='"ok"', token="t1")
            assert (await store.commit_items(items.lease, [end])).ok
            rest = await store.claim_items("k", "t2", 100.0, 4.0, limit=5)
            assert rest is not None
            assert [i.idx for i in rest.items] == [2]
        finally:
            await store.close()


@pytest.mark.parametrize("delivered", [True, False], ids=["it-landed", "it-did-not"])
async def test_a_connection_lost_during_an_item_commit_neither_loses_nor_repeats_it(
    url: str, delivered: bool
) -> None:
    with CuttingProxy("127.0.0.1", 5432) as proxy:
        store = PostgresStore(_through(url, proxy.port))
        try:
            await store.create_run(_new("r1"), 1.0)
            claimed = await store.claim("w", 100.0, 1.0)
            assert claimed is not None
            start = StartStep(1, 2.0, '{"step":"draw","kind":"map"}')
            opened = [start, AddItems("draw", ((0, None, '"a"'),)), OpenItems(1, None, 1)]
            assert (await store.commit(claimed.lease, opened)).ok
            items = await store.claim_items("h", "t1", 100.0, 3.0, limit=1)
            assert items is not None
            # The connection fails as the item commit's COMMIT goes out.
            proxy.cut = Cut(b"COMMIT", delivered)
            end = EndItem(
                "draw", 0, ItemStatus.SUCCEEDED, 4.0, output='"ok"', token="t1", event="{}"
            )
            outcome = await store.commit_items(items.lease, [end])
            assert proxy.cuts == 1
            assert outcome.ok
            ended = [e for e in await store.read_events("r1") if e.type == "item.succeeded"]
            assert len(ended) == 1
            (item,) = await store.get_items("r1", "draw")
            assert (item.status, item.output) == (ItemStatus.SUCCEEDED, "ok")
        finally:
            await store.close()


def test_a_database_or_user_that_does_not_exist_is_refused_not_waited_for(url: str) -> None:
    # The server answered: no wait helps, and the message says what to create.
    missing = f"{url}_nowhere?password=pw-in-the-query-1234"
    with pytest.raises(StoreError) as info:
        open_store(missing)
    assert not isinstance(info.value, DatabaseUnreachable)
    assert "does not exist" in str(info.value)
    assert "create the database and its user" in str(info.value)
    assert "pw-in-the-query-1234" not in str(info.value)
