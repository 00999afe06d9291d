"""Crash safety of a fleet: three ``regen worker`` processes on one database, a ``regen sim``
process serving their chat requests with seeded faults, and a killer that SIGKILLs a random
worker every 2-4 s and starts it again. Every run ends; every item ends once; no item is
generated again beyond what was in flight at a kill; a killed worker's runs move on within
a lease and a poll.

Runs on each backend (``database``: SQLite, and PostgreSQL when a server is there). The
figures (kills, recoveries) are printed (``-s``) and written to
``test-artifacts/{pg,sqlite}_crash.json``.
"""

from __future__ import annotations

import bisect
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import regen
from engine.flows import REFUSED_AT, REFUSED_EVERY, chat_prompt, chatty
from regen.engine import Engine, ItemStatus, RunStatus

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
RUNS, ITEMS = 3, 500
WORKERS = 3
#: ``regen worker --concurrency``: the runs spread over the workers, and the live workers
#: always have room (2 × 2 slots) for the runs of a killed one.
RUNS_PER_WORKER = 2
ITEMS_PER_RUN = 4  # the map step's concurrency (tests/engine/flows.py: chatty)
LEASE, POLL = 2.0, 0.25
#: Scheduling on a busy 2-core machine, a worker's start-up when it is the one taking
#: over, and the take-over's own first commit.
TOLERANCE = 1.5
MIN_KILLS = 8
DEADLINE = 200.0  # seconds for the whole fleet to finish every run
REGEN = [sys.executable, "-m", "regen.cli"]
WORKER = ["worker", "--flow", "engine.flows:chatty", "--concurrency", str(RUNS_PER_WORKER)]
WORKER += ["--poll", str(POLL), "--json"]
LATENCY = ["--latency", "300ms", "--jitter", "50ms"]  # per request: runs last 30 s or more
FAULTS = "server_error=0.04,overloaded=0.03,reset=0.02,bad_gateway_html=0.01"


def _python_path() -> str:
    """This checkout's ``src`` (the regen under test), ``tests`` (the flows) and the root."""
    src = Path(regen.__file__).resolve().parents[1]
    return os.pathsep.join(str(p) for p in (src, ROOT / "tests", ROOT))


class Fleet:
    """The simulator and the workers, as processes; their output in files under ``home``."""

    def __init__(self, database: str, home: Path) -> None:
        self.database = database
        self.home = home
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("REGEN_")},
            "PYTHONPATH": _python_path(),
            "PYTHONUNBUFFERED": "1",
            "REGEN_LEASE_TTL_S": str(LEASE),
            # Killed on purpose, again and again: no run here is a crasher.
            "REGEN_MAX_CRASHES": "1000",
            "REGEN_POSTGRES_POOL_SIZE": "5",
        }
        self.sim: subprocess.Popen[bytes] | None = None
        self.sim_url = ""
        self.workers: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start_sim(self) -> None:
        log = self.home / "sim.log"
        with log.open("wb") as out:
            self.sim = subprocess.Popen(
                [*REGEN, "sim", "--port", "0", "--faults", FAULTS, "--seed", "11", *LATENCY],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not (first := log.read_text().partition("\n"))[1]:
            if self.sim.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"regen sim did not start: {log.read_text()}")
            time.sleep(0.02)
        if not first[0].startswith("regen sim listening on "):
            pytest.fail(f"regen sim did not start: {log.read_text()}")
        self.sim_url = first[0].split()[-1]
        self.env["CRASH_SIM_URL"] = f"{self.sim_url}/v1"

    def start_worker(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = (self.home / f"worker-{self.started}.log").open("wb")
        with log:
            return subprocess.Popen(
                [*REGEN, "--database-url", self.database, "--home", str(self.home), *WORKER],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.sim_url}/_sim/stats", timeout=10).json())

    def stop_workers(self) -> list[int]:
        """Stop the workers with SIGTERM, as an operator would; their exit codes."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.workers:
            try:
                codes.append(proc.wait(20))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes

    def stop_sim(self) -> None:
        if self.sim is not None and self.sim.poll() is None:
            self.sim.send_signal(signal.SIGTERM)
            try:
                self.sim.wait(10)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.home.glob("worker-*.log"))
        )


def _held_by(engine: Engine, pid: int) -> list[str]:
    """The running runs whose lease the worker process ``pid`` holds (owner ``host:pid:…``)."""
    runs = engine.sync.list_runs(status=[RunStatus.RUNNING], limit=1000)
    return [r.id for r in runs if r.lease_owner and r.lease_owner.split(":")[1] == str(pid)]


def _events(engine: Engine, run_id: str) -> list[Any]:
    events, after = [], 0
    while page := engine.sync.read_events(run_id, after=after, limit=1000):
        events.extend(page)
        after = page[-1].seq
    return events


def _items(engine: Engine, run_id: str) -> dict[int, ItemStatus]:
    found, after = {}, -1
    while page := engine.sync.items(run_id, "ask", after=after, limit=1000):
        found.update((i.idx, i.status) for i in page)
        after = page[-1].idx
    return found


def _refused(idx: int) -> bool:
    return idx % REFUSED_EVERY == REFUSED_AT


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_fleet_of_sigkilled_workers_ends_every_item_once_and_recovers_within_a_lease(
    database: str, tmp_path: Path
) -> None:
    """Three workers, 3 runs × 500 chat items (map concurrency 4, up to 8 attempts each;
    every 50th item refused by the simulator, so given up), a SIGKILL every 2-4 s.

    - Every run ends ``partial``: its refused items given up, all others succeeded; each
      item has exactly one terminal event (``item.succeeded`` or ``item.given_up``).
    - Generations (the simulator's ``produced`` count per prompt): a given-up item has none;
      a succeeded item has one, plus those of executions a kill cut short. A killed worker
      had at most ``--concurrency`` (2) sessions × the map step's concurrency (4) = 8 items
      in flight, each of which may have been generated without its success being
      committed; and as many again when it had just claimed runs while helping with others'
      (a run is claimed at once; the helping sessions then claim nothing more and finish
      what they hold). So: the extra generations of succeeded items, summed, ≤ kills × 16.
    - Recovery: for each kill, and each run the killed worker held (its lease owner), the
      time from the kill to that run's next event (the take-over's ``run.started``) is at
      most the lease (2 s: the lease was renewed before the kill) + a poll (0.25 s: a live
      worker looks at the queue that often) + a tolerance of 1.5 s (a busy 2-core machine).
    """
    backend = "pg" if database.startswith("postgres") else "sqlite"
    with Engine(database, home=tmp_path) as engine:
        fleet = Fleet(database, tmp_path)
        rng = random.Random(int(os.environ.get("REGEN_CRASH_SEED", "7")))
        kills: list[dict[str, Any]] = []
        try:
            fleet.start_sim()
            run_ids = [engine.sync.start(chatty, {"n": ITEMS}).run.id for _ in range(RUNS)]
            fleet.workers = [fleet.start_worker() for _ in range(WORKERS)]
            started = time.monotonic()
            next_kill = started + rng.uniform(2, 4)
            while True:
                runs = [engine.sync.get_run(r) for r in run_ids]
                if all(r.status.finished for r in runs):
                    break
                if time.monotonic() - started > DEADLINE:
                    pytest.fail(
                        f"runs not finished after {DEADLINE} s: "
                        f"{[(r.id, r.status.value) for r in runs]}\n{fleet.logs()}"
                    )
                for proc in fleet.workers:
                    if proc.poll() is not None and proc.returncode != -signal.SIGKILL:
                        pytest.fail(f"a worker exited with {proc.returncode}\n{fleet.logs()}")
                if time.monotonic() >= next_kill:
                    index = rng.randrange(WORKERS)
                    victim = fleet.workers[index]
                    victim.kill()
                    victim.wait(30)
                    at = time.time()
                    kills.append(
                        {"at": at, "pid": victim.pid, "held": _held_by(engine, victim.pid)}
                    )
                    fleet.workers[index] = fleet.start_worker()
                    next_kill = time.monotonic() + rng.uniform(2, 4)
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            codes = fleet.stop_workers()
            prompts = fleet.stats()["prompts"]
        finally:
            fleet.stop_workers()
            fleet.stop_sim()
        # 0: stopped cleanly; -SIGTERM: a worker just started again, still importing.
        assert all(code in (0, -signal.SIGTERM) for code in codes), (codes, fleet.logs())
        assert len(kills) >= MIN_KILLS, f"only {len(kills)} kills in {elapsed:.1f} s"

        # Every run final, every item final, once.
        events = {r: _events(engine, r) for r in run_ids}
        for run_id in run_ids:
            run = engine.sync.get_run(run_id)
            assert run.status is RunStatus.PARTIAL, (run_id, run.status, run.error)
            items = _items(engine, run_id)
            assert items == {
                i: ItemStatus.GIVEN_UP if _refused(i) else ItemStatus.SUCCEEDED
                for i in range(ITEMS)
            }
            ends = collections.Counter(
                (e.data["item"], e.type)
                for e in events[run_id]
                if e.type in ("item.succeeded", "item.given_up")
            )
            assert sorted(ends) == sorted(
                (i, "item.given_up" if _refused(i) else "item.succeeded") for i in range(ITEMS)
            )
            assert set(ends.values()) == {1}, [k for k, n in ends.items() if n > 1]

        # No item generated again beyond what was in flight at a kill.
        produced = {
            (r, i): prompts.get(chat_prompt(r, i), {}).get("produced", 0)
            for r in run_ids
            for i in range(ITEMS)
        }
        assert all(n == 0 for (_, i), n in produced.items() if _refused(i))
        assert all(n >= 1 for (_, i), n in produced.items() if not _refused(i))
        extra = sum(n - 1 for (_, i), n in produced.items() if not _refused(i))
        allowed = len(kills) * 2 * RUNS_PER_WORKER * ITEMS_PER_RUN

        # Recovery: from each kill to the next event of every run the killed worker held.
        times = {r: sorted(e.at for e in events[r]) for r in run_ids}
        recoveries = []
        for kill in kills:
            for run_id in kill["held"]:
                later = times[run_id][bisect.bisect_right(times[run_id], kill["at"]) :]
                assert later, f"run {run_id} held by a killed worker never moved again"
                recoveries.append(round(later[0] - kill["at"], 3))
        bound = LEASE + POLL
        figures = {
            "backend": backend,
            "runs": RUNS,
            "items_per_run": ITEMS,
            "workers": WORKERS,
            "lease_s": LEASE,
            "poll_s": POLL,
            "elapsed_s": round(elapsed, 1),
            "kills": len(kills),
            "kills_holding_runs": sum(1 for k in kills if k["held"]),
            "extra_generations": extra,
            "extra_generations_allowed": allowed,
            "recovery_s": recoveries,
            "recovery_max_s": max(recoveries, default=None),
            "recovery_bound_s": bound,
            "tolerance_s": TOLERANCE,
        }
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{backend}_crash.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps({k: v for k, v in figures.items() if k != "recovery_s"}))
        print("recovery after each kill (s):", recoveries)
        assert extra <= allowed, (extra, allowed)
        assert recoveries, "no kill hit a worker that held a run"
        assert max(recoveries) <= bound + TOLERANCE, recoveries
