"""Crash safety: SIGKILL a worker at random points, again and again, and check that every
run finishes, that no committed item is ever redone, and that nothing checkpointed is lost;
and kill one exactly between a step's work and its checkpoint, where only the idempotency
key keeps a side effect from happening twice. On each backend (``database``)."""

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

from engine.flows import Outbox, crashy, keyed, publisher
from regen.engine import Engine, ItemStatus, RunStatus, Settings
from regen.retry import FakeClock, test_mode

CHILD = Path(__file__).with_name("crash_child.py")
RUNS, ITEMS, MIN_KILLS = 3, 250, 20


def _counts(log: Path) -> collections.Counter[int]:
    if not log.exists():
        return collections.Counter()
    return collections.Counter(int(line) for line in log.read_text().split())


def _succeeded(engine: Engine, run_id: str) -> set[int]:
    done, after = set(), -1
    while items := engine.sync.items(
        run_id, "side_effect", status=ItemStatus.SUCCEEDED, after=after, limit=1000
    ):
        done.update(i.idx for i in items)
        after = items[-1].idx
    return done


def _killed_at(point: str, database: str, home: Path, flow: str) -> None:
    """Run the queued runs in a child worker that SIGKILLs itself at fault ``point``."""
    env = {**os.environ, "REGEN_FAULT_POINT": f"{point}:1.0"}
    child = subprocess.run(
        [sys.executable, str(CHILD), database, str(home), flow], env=env, timeout=60, check=False
    )
    assert child.returncode == -signal.SIGKILL


def _after_the_lease_expired() -> FakeClock:
    """The parent's clock: an hour on, when the dead child's lease (30 s) has long expired."""
    return FakeClock(now=time.time() + 3600)


async def test_a_step_that_published_then_crashed_publishes_once_on_resume(
    database: str, tmp_path: Path
) -> None:
    outbox = Outbox(str(tmp_path))
    with (
        test_mode(clock=_after_the_lease_expired()),
        Engine(database, home=tmp_path, settings=Settings()) as engine,
    ):
        run_id = (await engine.start(publisher, {"outbox": str(tmp_path)})).run.id
        # Killed after publish_mcp's work, before its checkpoint was committed.
        _killed_at("after_step_work", database, tmp_path, "engine.flows:publisher")
        assert (await engine.get_run(run_id)).status is RunStatus.RUNNING
        assert (await engine.detail(run_id)).steps[0].output is None  # no checkpoint was written
        assert len(outbox.publications()) == 1
        run = await engine.execute(run_id)  # taken over: publish_mcp runs again
        detail = await engine.detail(run_id)
        starts = [e.data for e in await engine.read_events(run_id) if e.type == "run.started"]
    assert run.status is RunStatus.SUCCEEDED
    key = f"{run_id}/publish_mcp"
    assert outbox.keys_called() == [key, key]  # called twice, with one key
    assert list(outbox.publications()) == [key]  # published once
    assert detail.steps[1].output == {"publication": "pub-1"}
    assert [s["resumed"] for s in starts] == [False, True]


async def test_an_items_idempotency_key_survives_a_take_over(database: str, tmp_path: Path) -> None:
    log = tmp_path / "render.log"
    with (
        test_mode(clock=_after_the_lease_expired()),
        Engine(database, home=tmp_path, settings=Settings()) as engine,
    ):
        run_id = (await engine.start(keyed, {"log": str(log)})).run.id
        # Killed after the first item's work, before its success was committed.
        _killed_at("after_item_work", database, tmp_path, "engine.flows:keyed")
        before = log.read_text().splitlines()
        assert await engine.items(run_id, "render", status="succeeded") == []  # not committed
        run = await engine.execute(run_id)
        items = await engine.items(run_id, "render")
    assert run.status is RunStatus.SUCCEEDED
    assert before == [f"a {run_id}/render/post-a"]
    assert log.read_text().splitlines() == [
        f"a {run_id}/render/post-a",  # the killed execution's
        f"a {run_id}/render/post-a",  # the same item again after the take-over: same key
        f"b {run_id}/render/post-b",
        f"c {run_id}/render/post-c",
    ]
    assert [(i.key, i.status) for i in items] == [
        (f"post-{name}", ItemStatus.SUCCEEDED) for name in "abc"
    ]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkilled_workers_lose_no_checkpoint_and_redo_only_what_was_in_flight(
    database: str, tmp_path: Path
) -> None:
    home = tmp_path
    engine = Engine(database, home=home)
    logs = {}
    for i in range(RUNS):
        log = tmp_path / f"effects-{i}.log"
        run = engine.sync.start(crashy, {"n": ITEMS, "log": str(log)}).run
        logs[run.id] = log
    rng = random.Random(int(os.environ.get("REGEN_CRASH_SEED", "7")))
    env = {
        **os.environ,
        "REGEN_LEASE_TTL_S": "1",
        # The soak kills its workers on purpose, many times per run: no run is a crasher.
        "REGEN_MAX_CRASHES": "1000",
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
        child = subprocess.Popen([sys.executable, str(CHILD), database, str(home)], env=env)
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
                logs[engine.sync.start(crashy, {"n": ITEMS, "log": str(log)}).run.id] = log
    elapsed = time.monotonic() - started
    assert kills >= MIN_KILLS
    for run_id, log in logs.items():
        run = engine.sync.get_run(run_id)
        assert run.status is RunStatus.SUCCEEDED, (run_id, run.status, run.error)
        counts = _counts(log)
        assert set(counts) == set(range(ITEMS))  # every item's work was done
        assert _succeeded(engine, run_id) == set(range(ITEMS))  # and checkpointed
        assert engine.sync.detail(run_id).steps[1].output["succeeded"] == ITEMS
        redone = sum(c - 1 for c in counts.values())
        # Concurrency 1 per run: at most the one item in flight is redone per kill, plus
        # the flaky items' deliberate retries.
        flaky = sum(1 for i in range(ITEMS) if i % 37 == 5)
        assert redone <= kills + flaky, (run_id, redone, kills)
    for (run_id, idx), count in frozen.items():
        assert _counts(logs[run_id])[idx] == count, "a committed item was done again"
    engine.close()
    print(f"{kills} kills, {len(logs)} runs, {elapsed:.1f}s")
