"""A PostgreSQL server restarted under running workers: they reconnect and finish.

The server restarted is a private, throw-away one (``initdb`` in a temporary folder, on a
free loopback port), never the machine's shared server. Without PostgreSQL's server
binaries the test is skipped, except in CI (``CI=true``), where it fails. ``initdb``
refuses to run as root: as root, the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")

ROOT = Path(__file__).resolve().parents[2]
#: This checkout's regen first (not one installed elsewhere), and its tests' flows.
PYTHONPATH = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
_WORKER = (sys.executable, "-m", "regen.cli", "worker")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI runs the PostgreSQL restart test", pytrace=False)
    pytest.skip(f"{reason}: apt-get install postgresql")


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        path = shutil.which("initdb")
        if path is None:
            _unavailable("no PostgreSQL server binaries (initdb, pg_ctl)")
        found = [str(path)]
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateServer:
    """A PostgreSQL server of its own in ``folder``, on ``port`` (trust auth, loopback)."""

    def __init__(self, folder: Path) -> None:
        self.bin = _binaries()
        self.folder = folder
        self.data = folder / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        # initdb refuses root; the server then runs as the postgres user.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                _unavailable("running as root, and no postgres user to run the server as")
            shutil.chown(folder, "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{tool} failed: {done.stdout}\n{done.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """Stop at once (``fast``: every connection is cut, open transactions roll back)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def server() -> Iterator[PrivateServer]:
    # Not under pytest's tmp_path: the postgres user must reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="regen-pg-"))
    made: PrivateServer | None = None
    try:
        made = PrivateServer(folder)
        made.start()
        yield made
    finally:
        if made is not None:
            with contextlib.suppress(Exception):
                made.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _regen(url: str, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regen.cli", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": PYTHONPATH,
            "REGEN_DATABASE_URL": url,
            "REGEN_HOME": str(home),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _worker(url: str, home: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*_WORKER, "--flow", "tests.cli.flows:demo", "--poll", "0.2", "--concurrency", "2"],
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


def _database(server: PrivateServer) -> str:
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE regen")
    return server.url.rsplit("/", 1)[0] + "/regen"


def _one(url: str, sql: str) -> Any:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as db:
        row = db.execute(sql).fetchone()
        return None if row is None else row[0]


def _until(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_workers_reconnect_after_a_database_restart_and_every_run_succeeds(
    server: PrivateServer, tmp_path: Path
) -> None:
    url = _database(server)
    runs, quota = 4, 6
    for _ in range(runs):
        queued = _regen(
            url,
            tmp_path,
            "run",
            "tests.cli.flows:demo",
            "--queue",
            "-p",
            f"count={quota}",
            "-p",
            "fail_item=99",
        )
        assert queued.returncode == 0, queued.stderr
    workers = [_worker(url, tmp_path, CLI_TEST_ITEM_DELAY="0.3") for _ in range(2)]

    def one(sql: str) -> Any:
        return _one(url, sql)

    outputs: list[tuple[str, str]] = []
    try:
        _until(lambda: one("SELECT count(*) FROM items WHERE status = 'succeeded'") >= 4, 60)
        unfinished = one("SELECT count(*) FROM runs WHERE status <> 'succeeded'")
        server.stop()  # mid-run: every connection is cut
        time.sleep(3.0)
        server.start()
        _until(lambda: one("SELECT count(*) FROM runs WHERE status = 'succeeded'") == runs, 120)
        for worker in workers:
            assert worker.poll() is None, "a worker stopped"  # it outlived the restart
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
            outputs.append(worker.communicate(timeout=60))
    print("\n".join(err for _, err in outputs))
    assert unfinished > 0  # the restart came with runs in flight
    with psycopg.connect(url, autocommit=True) as db:
        items = db.execute(
            "SELECT r.id, e.data FROM events AS e JOIN runs AS r ON r.key = e.run "
            "WHERE e.type = 'item.succeeded'"
        ).fetchall()
        per_run: dict[str, list[int]] = {}
        for run_id, data in items:
            per_run.setdefault(run_id, []).append(json.loads(data)["item"])
        assert len(per_run) == runs
        for done in per_run.values():
            assert len(done) == len(set(done)) == quota  # none lost, none done twice
        steps = db.execute("SELECT status, output IS NOT NULL FROM steps").fetchall()
        assert steps == [("succeeded", True)] * (runs * 3)  # every checkpoint is there
        executions = db.execute("SELECT executions, crashes FROM runs").fetchall()
        assert executions == [(1, 0)] * runs  # finished by the worker that started it


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_idle_worker_outlives_an_outage_longer_than_a_call_waits(
    server: PrivateServer, tmp_path: Path
) -> None:
    url = _database(server)
    # Each call gives up on the database after half a second; the worker goes on.
    worker = _worker(url, tmp_path, REGEN_POSTGRES_RECONNECT_S="0.5")
    try:
        listening = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN regen_queue%'"
        _until(lambda: _one(url, listening), 60)
        server.stop()
        time.sleep(3.0)
        server.start()
        assert worker.poll() is None, "the worker stopped"
        queued = _regen(
            url, tmp_path, "run", "tests.cli.flows:demo", "--queue", "-p", "count=1",
            "-p", "fail_item=99",
        )  # fmt: skip
        assert queued.returncode == 0, queued.stderr
        _until(lambda: _one(url, "SELECT status FROM runs") == "succeeded", 60)
    finally:
        if worker.poll() is None:
            worker.terminate()
        _, err = worker.communicate(timeout=60)
    assert "the database cannot be reached; trying again" in err, err
