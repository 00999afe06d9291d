"""The command line over real processes where the store is shared, damaged or read-only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOW = "tests.cli.flows:demo"
CRASHING = "tests.cli.flows:crashing"


def regen(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regen.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "REGEN_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def started(home: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "regen.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "REGEN_HOME": str(home), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def runs(home: Path) -> list[dict[str, Any]]:
    done = regen(home, "runs", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_processes_starting_one_key_share_one_run_and_all_exit_by_its_outcome(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    regen(home, "db", "upgrade")  # the schema exists before they race
    args = ("run", FLOW, "--key", "day-1", "-p", "count=1", "-p", "fail_item=99")
    procs = [started(home, *args, CLI_TEST_ITEM_DELAY="1") for _ in range(6)]
    outputs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * 6, outputs
    (run,) = runs(home)
    assert (run["status"], run["executions"]) == ("succeeded", 1)
    assert all("succeeded" in out for out, _ in outputs)
    assert not any("Traceback" in err for _, err in outputs)


@pytest.mark.slow
def test_twenty_processes_starting_one_slow_key_all_wait_for_its_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    regen(home, "db", "upgrade")
    args = ("run", "tests.cli.flows:slow", "--key", "slow")
    procs = [started(home, *args, CLI_TEST_STEP_DELAY="7") for _ in range(20)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [err for _, err in outputs if err]
    assert not any("Traceback" in err for _, err in outputs)
    (run,) = runs(home)
    assert (run["status"], run["executions"]) == ("succeeded", 1)


def test_a_damaged_database_is_refused_untouched_and_db_check_says_why(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert regen(home, "run", FLOW, "-p", "count=1", "-p", "fail_item=99").returncode == 0
    db = home / "regen.db"
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{db}{suffix}").exists() or Path(f"{db}{suffix}").stat().st_size == 0
    with db.open("r+b") as handle:
        handle.truncate(db.stat().st_size - 1000)
    before = db.read_bytes()
    refused = regen(home, "run", FLOW, "-p", "count=1", "-p", "fail_item=99")
    assert refused.returncode == 1
    assert "regen db check" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert db.read_bytes() == before
    checked = regen(home, "db", "check")
    assert checked.returncode == 1
    assert "damaged" in checked.stdout
    assert "backup" in checked.stdout
    fine = regen(tmp_path / "other", "db", "check", "--json")
    assert (fine.returncode, json.loads(fine.stdout)["ok"]) == (1, False)  # no file yet
    nothing = regen(tmp_path / "other", "db", "check")
    assert nothing.returncode == 1
    assert "no database here yet; regen creates it on first use" in nothing.stdout
    assert ": damaged" not in nothing.stdout
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("directory", "is a directory"),
        ("no-version", "no schema version"),
        ("no-column", "lacks column"),
    ],
)
def test_damaged_set_ups_are_one_clear_line_and_nothing_is_created(
    tmp_path: Path, damage: str, message: str
) -> None:
    import sqlite3  # noqa: PLC0415

    home = tmp_path / "home"
    db = home / "regen.db"
    if damage == "directory":
        db.mkdir(parents=True)
    else:
        assert regen(home, "db", "upgrade").returncode == 0
        conn = sqlite3.connect(db)
        conn.execute(
            "PRAGMA user_version=0"
            if damage == "no-version"
            else "ALTER TABLE runs DROP COLUMN crashes"
        )
        conn.commit()
        conn.close()
    done = regen(home, "run", FLOW, "-p", "count=1", "-p", "fail_item=99")
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    if damage != "directory":
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        conn.close()


@pytest.fixture
def read_only_home(tmp_path: Path) -> Any:
    """A data directory with one run in it, then made read-only (a read-only bind mount:
    root ignores permission bits)."""
    home = tmp_path / "home"
    assert regen(home, "run", FLOW, "-p", "count=1", "-p", "fail_item=99").returncode == 0
    if os.geteuid() != 0:
        home.chmod(0o555)
        (home / "regen.db").chmod(0o444)
        yield home
        home.chmod(0o755)
        return
    mounted = tmp_path / "ro"
    mounted.mkdir()
    steps = [
        ["mount", "--bind", str(home), str(mounted)],
        ["mount", "-o", "remount,ro,bind", str(mounted)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", str(mounted)], check=False)
            pytest.skip(f"cannot make a read-only mount here: {done.stderr!r}")
    try:
        yield mounted
    finally:
        subprocess.run(["umount", str(mounted)], check=False)


def test_read_only_commands_work_in_a_read_only_data_directory(read_only_home: Path) -> None:
    listed = regen(read_only_home, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    shown = regen(read_only_home, "show", run["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "succeeded"
    events = regen(read_only_home, "events", run["id"], "--json")
    assert events.returncode == 0, events.stderr
    checked = regen(read_only_home, "db", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "damaged" not in checked.stdout + checked.stderr
    refused = regen(read_only_home, "run", FLOW, "-p", "count=1", "-p", "fail_item=99")
    assert refused.returncode == 1
    assert "read-only" in refused.stderr


def _expire_lease(home: Path, run_id: str) -> None:
    """Wait (in short steps) until the run's lease has expired."""
    shown = json.loads(regen(home, "show", run_id, "--json").stdout)
    until = shown["lease_expires_at"] or 0
    while time.time() <= until:
        time.sleep(0.05)


def test_a_run_that_keeps_killing_its_process_fails_as_crashed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fast = {"REGEN_LEASE_TTL_S": "0.5", "REGEN_MAX_CRASHES": "2"}
    first = regen(home, "run", CRASHING, **fast)
    assert first.returncode == -9
    (run,) = runs(home)
    for _ in range(2):
        _expire_lease(home, run["id"])
        worker = regen(home, "worker", "--max-runs", "1", "--poll", "0.05", **fast)
        if worker.returncode == 0:
            break
        assert worker.returncode == -9  # taken over, and killed again
    (run,) = runs(home)
    assert run["status"] == "failed"
    assert run["crashes"] == 2
    assert run["error"]["kind"] == "crashed"
    assert "explode" in run["error"]["message"]
    shown = json.loads(regen(home, "show", run["id"], "--json").stdout)
    assert [(s["name"], s["status"]) for s in shown["steps"]] == [
        ("prepare", "succeeded"),
        ("explode", "failed"),
    ]
    # Fixed: a retry runs it to its end, from the step that crashed.
    fixed = regen(home, "retry", run["id"], CLI_TEST_NO_CRASH="1", **fast)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert runs(home)[0]["status"] == "succeeded"


def test_a_run_whose_process_died_can_be_retried_or_cancelled_at_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fast = {"REGEN_LEASE_TTL_S": "0.5"}
    assert regen(home, "run", CRASHING, **fast).returncode == -9
    (run,) = runs(home)
    assert run["status"] == "running"
    _expire_lease(home, run["id"])
    retried = regen(home, "retry", run["id"], "--no-wait", **fast)
    assert retried.returncode == 0, retried.stderr
    assert runs(home)[0]["status"] == "queued"
    assert regen(home, "cancel", run["id"]).returncode == 0
    assert runs(home)[0]["status"] == "cancelled"


def test_with_auto_upgrade_off_only_regen_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    home = tmp_path / "home"
    off = {"REGEN_DB_AUTO_UPGRADE": "0"}
    refused = regen(home, "run", FLOW, "-p", "count=1", "-p", "fail_item=99", **off)
    assert refused.returncode == 1
    assert "run `regen db upgrade`" in refused.stderr
    upgraded = regen(home, "db", "upgrade", **off)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "up to date" in upgraded.stdout
    done = regen(home, "run", FLOW, "-p", "count=1", "-p", "fail_item=99", **off)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("given", ["option", "environment"])
def test_a_database_url_of_unknown_scheme_names_where_it_is_set(tmp_path: Path, given: str) -> None:
    url = "mysql://app:hunter2@db.example/regen"
    if given == "option":
        done = regen(tmp_path, "--database-url", url, "runs")
    else:
        done = regen(tmp_path, "runs", REGEN_DATABASE_URL=url)
    assert done.returncode == 2
    assert "database URL mysql://…: unknown scheme" in done.stderr
    assert "REGEN_DATABASE_URL, or --database-url" in done.stderr
    assert "hunter2" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
