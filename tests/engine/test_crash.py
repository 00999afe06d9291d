"""Crash safety: SIGKILL a worker at random points, again and again, and check that every
run finishes, that no committed item is ever redone, and that nothing checkpointed is lost."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.flows import crashy
from regen.engine import Engine, ItemStatus, RunStatus

CHILD = Path(__file__).with_name("crash_child.py")
RUNS, ITEMS, MIN_KILLS = 3, 250, 20


def _counts(log: Path) -> collections.Counter[int]:
    if not log.exists():
        return collections.Counter()
    return collections.Counter(int(line) for line in log.read_text().split())


def _succeeded(engine: Engine, run_id: str) -> set[int]:
    done, after = set(), -1
    while items := engine.items(
        run_id, "side_effect", status=ItemStatus.SUCCEEDED, after=after, limit=1000
    ):
        done.update(i.idx for i in items)
        after = items[-1].idx
    return done


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkilled_workers_lose_no_checkpoint_and_redo_only_what_was_in_flight(
    tmp_path: Path,
) -> None:
    db, home = tmp_path / "regen.db", tmp_path
    engine = Engine(f"sqlite:///{db}", home=home)
    logs = {}
    for i in range(RUNS):
        log = tmp_path / f"effects-{i}.log"
        run = engine.start(crashy, {"n": ITEMS, "log": str(log)}).run
        logs[run.id] = log
    rng = random.Random(int(os.environ.get("REGEN_CRASH_SEED", "7")))
    env = {
        **os.environ,
        "REGEN_LEASE_TTL_S": "1",
        "CRASHY_FLAKY": "1",
        "REGEN_FAULT_POINT": (
            "after_item_work:0.01,before_commit:0.004,after_commit:0.004,"
            "after_step_work:0.3,after_claim:0.05"
        ),
    }
    kills = 0
    frozen: dict[tuple[str, int], int] = {}  # committed items and their effect counts then
    started = time.monotonic()
    for _ in range(200):
        env["REGEN_FAULT_SEED"] = str(rng.random())
        child = subprocess.Popen([sys.executable, str(CHILD), str(db), str(home)], env=env)
        try:
            child.wait(timeout=rng.uniform(0.3, 1.5))
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        if child.returncode == -signal.SIGKILL:
            kills += 1
            for run_id, log in logs.items():
                counts = _counts(log)
                for idx in _succeeded(engine, run_id):
                    frozen.setdefault((run_id, idx), counts[idx])
        elif child.returncode == 0 and kills >= MIN_KILLS:
            break
        elif child.returncode not in (0, -signal.SIGKILL):
            pytest.fail(f"the worker exited with {child.returncode}")
        if child.returncode == 0:  # all finished before enough kills: queue more work
            for i in range(RUNS):
                log = tmp_path / f"effects-more-{kills}-{i}.log"
                logs[engine.start(crashy, {"n": ITEMS, "log": str(log)}).run.id] = log
    elapsed = time.monotonic() - started
    assert kills >= MIN_KILLS
    for run_id, log in logs.items():
        run = engine.get_run(run_id)
        assert run.status is RunStatus.SUCCEEDED, (run_id, run.status, run.error)
        counts = _counts(log)
        assert set(counts) == set(range(ITEMS))  # every item's work was done
        assert _succeeded(engine, run_id) == set(range(ITEMS))  # and checkpointed
        assert engine.detail(run_id).steps[1].output["succeeded"] == ITEMS
        redone = sum(c - 1 for c in counts.values())
        # Concurrency 1 per run: at most the one item in flight is redone per kill, plus
        # the flaky items' deliberate retries.
        flaky = sum(1 for i in range(ITEMS) if i % 37 == 5)
        assert redone <= kills + flaky, (run_id, redone, kills)
    for (run_id, idx), count in frozen.items():
        assert _counts(logs[run_id])[idx] == count, "a committed item was done again"
    engine.close()
    print(f"{kills} kills, {len(logs)} runs, {elapsed:.1f}s")
