"""Crash safety of the real app: ``python -m examples.daily_news auto …`` SIGKILLed mid-batch
again and again, rerun each time with the same command, against a simulator living in this
test process (its stats survive every kill).

Phase 1 kills the process from outside at a random moment after it starts talking to the
simulator; in both phases the engine's fault points (``REGEN_FAULT_POINT``) also kill it
right after an item's work or a step's checkpoint (the first run of phase 2 dies at the
first one it passes), so images and drafts saved but not checkpointed are met, and a
give-up recorded in ``post.json`` just before an outside kill may be.
Then: ``count`` posts succeeded, no image was generated twice beyond the one in flight at
each kill, every give-up was recorded once, no draft was saved twice.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from examples.daily_news import app
from examples.daily_news.news import pick_candidates
from examples.daily_news.posts import DraftBox, PostStore

from regen.engine import ItemStatus
from regen.sim import SimServer, run_simulator

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-daily-news-0123456789"
TITLE = "每日新闻"
DATE = "2025-06-01"
COUNT = 5
EXTERNAL_KILLS = 12
MAX_RUNS = 60


def environment(sim: SimServer) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALIYUN_IMAGE_", "DASHSCOPE_", "IMAGE_PROVIDER", "REGEN_"))
    }
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "DASHSCOPE_BASE_URL": sim.dashscope_base_url,  # this process's simulator
            "DASHSCOPE_API_KEY": KEY,
            "ALIYUN_IMAGE_POLL_INTERVAL_S": "0.05",
            "ALIYUN_IMAGE_RETRY_SLEEP_S": "0.05",
            "ALIYUN_IMAGE_TIMEOUT_S": "10",
            "REGEN_LEASE_TTL_S": "1",  # a killed process's run is taken over within a second
            "REGEN_MAX_CRASHES": "1000",  # killed on purpose, many times: not a crashing run
            "COLUMNS": "1000",  # console lines unwrapped: the test reads them
        }
    )
    return env


def submits(sim: SimServer) -> dict[str, int]:
    return {p: e["routes"].get("dashscope_submit", 0) for p, e in sim.stats()["prompts"].items()}


#: A rerun reading back a give-up that a killed process had saved in ``post.json``.
_KEPT_GIVE_UP = re.compile(r"^\[(\d+)/\d+\] .* given up in an earlier execution of this run", re.M)


def kept_give_ups(console: str) -> set[int]:
    """Indexes of the candidates whose recorded give-up a run kept instead of retrying."""
    return {int(index) for index in _KEPT_GIVE_UP.findall(console)}


def unfinished(data_dir: Path) -> set[int]:
    """Indexes of the candidates whose illustrate item is not finished in regen's store (in
    flight at a kill)."""
    if not (data_dir / "regen" / "regen.db").exists():
        return set()
    with app.open_engine(data_dir) as engine:
        run = engine.sync.find_run("daily_news", app.business_key(TITLE, DATE))
        if run is None:
            return set()
        done = {
            str(i.key)
            for i in engine.sync.items(run.id, "illustrate", limit=1000)
            if i.status in (ItemStatus.SUCCEEDED, ItemStatus.GIVEN_UP, ItemStatus.SKIPPED)
        }
    return {
        c.index for c in pick_candidates(TITLE, DATE, COUNT, batch=run.id) if c.post_id not in done
    }


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_mid_batch_then_rerun_finishes_once(tmp_path: Path) -> None:
    c = pick_candidates(TITLE, DATE, COUNT)
    auth, fake = c[3], c[5]  # 401 at once; three XML "images" then give up (~2 s in all)
    wanted = [c[0], c[1], c[2], c[4], c[6]]
    rng = random.Random(20240601)
    command = [
        sys.executable,
        "-m",
        "examples.daily_news",
        "auto",
        "--title",
        TITLE,
        "--count",
        str(COUNT),
        "--date",
        DATE,
        "--json",
    ]
    in_flight: Counter[int] = Counter()  # by candidate index
    kills = external = 0
    kept: set[int] = set()  # candidates whose give-up a rerun read back from post.json
    summary = None
    with run_simulator(task_seconds=0.5) as sim:
        sim.script(
            {"prompt": auth.prompt, "then": "auth"}, {"prompt": fake.prompt, "then": "fake_image"}
        )
        base = environment(sim)
        for n in range(MAX_RUNS):
            # The engine's fault points kill the process right after an item's work (image
            # or draft saved, not yet checkpointed) or a step's checkpoint; in phase 1 the
            # test also kills it from outside at a random moment. Phase 2 starts with a
            # run that dies at the first point it passes.
            if external < EXTERNAL_KILLS:
                points = "after_item_work:0.2"
            elif kills == external:
                points = "after_item_work:1,after_step_checkpoint:1"
            else:
                points = "after_item_work:0.5,after_step_checkpoint:0.35"
            env = {**base, "REGEN_FAULT_SEED": str(n), "REGEN_FAULT_POINT": points}
            out, err = tmp_path / f"out{n}.json", tmp_path / f"err{n}.txt"
            with out.open("w") as stdout, err.open("w") as stderr:
                proc = subprocess.Popen(
                    command, cwd=tmp_path, env=env, stdout=stdout, stderr=stderr
                )
                if external < EXTERNAL_KILLS:
                    seen = sim.stats()["requests"]
                    while proc.poll() is None and sim.stats()["requests"] == seen:
                        time.sleep(0.005)  # wait until this process works (lease taken over)
                    time.sleep(rng.uniform(0.02, 1.5))
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGKILL)
                        external += 1
                code = proc.wait(timeout=60)
            kept |= kept_give_ups(err.read_text())
            if code == -signal.SIGKILL:
                kills += 1
                in_flight.update(
                    unfinished(tmp_path / "data")
                    & {x.index for x in c if submits(sim).get(x.prompt, 0)}
                )
                continue
            assert code == 0, err.read_text()
            summary = json.loads(out.read_text())
            break
        stats = sim.stats()["prompts"]
    assert summary is not None, f"the batch did not finish in {MAX_RUNS} runs"
    c = pick_candidates(TITLE, DATE, COUNT, batch=summary["run_id"])  # with their post ids
    auth, fake = c[3], c[5]
    wanted = [c[0], c[1], c[2], c[4], c[6]]
    print(
        f"{kills} kills ({external} from outside), in flight at kills: {dict(in_flight)}; "
        f"give-ups kept by a rerun: {sorted(kept)}; tasks per candidate:",
        [stats.get(x.prompt, {"routes": {}})["routes"].get("dashscope_submit", 0) for x in c[:8]],
    )
    assert external >= 10
    assert kills > external  # the engine's fault points killed it too

    # the batch reached its count; the two give-ups are the scripted ones
    assert summary["status"] == "succeeded"
    assert summary["succeeded"] == [x.post_id for x in wanted]
    assert summary["failed"] == [auth.post_id, fake.post_id]
    assert summary["drafts"] == summary["succeeded"]

    # no image generated twice beyond the one in flight at each kill
    for news in c:
        entry = stats.get(news.prompt, {"routes": {}, "produced": 0})
        tasks, images = entry["routes"].get("dashscope_submit", 0), entry["produced"]
        per_try = 3 if news is fake else 1
        assert tasks <= per_try * (1 + in_flight[news.index]), (news.index, tasks, in_flight)
        if news in wanted:
            assert 1 <= images <= 1 + in_flight[news.index], (news.index, images, in_flight)
        elif news not in (auth, fake):
            assert tasks == 0  # candidates after the count was reached were never tried

    # every give-up recorded once; every draft saved once
    store = PostStore(tmp_path / "data")
    for news, attempts in ((auth, 1), (fake, 3)):
        post = store.load(news.post_id)
        assert post is not None
        assert post["status"] == "failed"
        generate = post["platform"]["image_generate"]
        assert generate["give_up"] is True
        assert generate["attempts"] == attempts
        assert len(generate["errors"]) == attempts
        assert "draft" not in post["platform"]
    for news in wanted:
        post = store.load(news.post_id)
        assert post is not None
        assert post["status"] == "draft_saved"
    drafts = DraftBox(tmp_path / "data").all()
    assert sorted(d["post_id"] for d in drafts) == sorted(summary["succeeded"])
    with app.open_engine(tmp_path / "data") as engine:
        runs = engine.sync.list_runs()
        assert [r.id for r in runs] == [summary["run_id"]]
        events = engine.sync.read_events(summary["run_id"], limit=100_000)
    given_up = Counter(e.data["key"] for e in events if e.type == "item.given_up")
    assert given_up == {auth.post_id: 1, fake.post_id: 1}
    # The app's own image.given_up event: once per give-up, never again on a rerun. It is
    # missing only where a kill lost it with the process after post.json recorded the
    # give-up, and the rerun kept that give-up (said so on its console) instead of retrying.
    app_given_up = Counter(e.data["post_id"] for e in events if e.type == "image.given_up")
    assert set(app_given_up) <= set(given_up)
    assert all(n == 1 for n in app_given_up.values())
    for news in (auth, fake):
        if news.post_id not in app_given_up:
            assert news.index in kept, (news.index, kept)
