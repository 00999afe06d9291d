"""A short version of the daily batch, ``python -m examples.daily_news demo``: seconds,
offline, faults guaranteed.

Three posts are wanted from fifteen candidates, against an in-process simulator scripted
so that every behaviour of the seed shows up once:

- candidate 1: its first image task hangs → a timeout, retried, then an image;
- candidate 2: three downloads that are XML error pages, not images → given up after three
  attempts, saved as ``failed`` with ``give_up: true``, no draft;
- candidate 3: a reply without a task id (malformed) → retried, then an image;
- candidate 4: 401 → not retried (one call), saved as ``failed``;
- candidate 5: an image at once — it backfills the two give-ups, and the batch stops.

The demo SHORTENS THE WAITS so it finishes in seconds: the policy is read from
:data:`DEMO_ENV` (1.5 s per generation instead of 180 s, 0.2 s between attempts instead of
2 s, 2 s per download instead of 60 s) rather than from ``ALIYUN_IMAGE_*``, and simulated
tasks take 50 ms.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from examples.daily_news import app
from examples.daily_news.images import AliyunImageClient, image_policy
from examples.daily_news.news import pick_candidates
from examples.daily_news.posts import PostStore
from examples.daily_news.runtime import SIM_KEY, Runtime, SimSettings, image_backend

DEMO_TITLE = "每日新闻"
DEMO_COUNT = 3
#: The demo's policy settings: the seed's variables, with waits shortened for a demo.
DEMO_ENV = {
    "ALIYUN_IMAGE_MAX_ATTEMPTS": "3",
    "ALIYUN_IMAGE_RETRY_SLEEP_S": "0.2",
    "ALIYUN_IMAGE_TIMEOUT_S": "1.5",
    "ALIYUN_IMAGE_DOWNLOAD_TIMEOUT_S": "2",
}
#: Faults for candidates 1–4 by the prompt they send (see the module docstring).
DEMO_STEPS = (
    ["hang", "ok"],
    ["fake_image", "fake_image", "fake_image"],
    ["missing_fields", "ok"],
    ["auth"],
)


def demo_rules(title: str, date: str, count: int) -> list[dict[str, Any]]:
    """The simulator script of the demo: faults for the first candidates, by prompt."""
    candidates = pick_candidates(title, date, count)
    return [
        {"prompt": c.prompt, "steps": steps}
        for c, steps in zip(candidates, DEMO_STEPS, strict=False)
    ]


async def run_demo_async(
    data_dir: str | os.PathLike[str],
    console: Console | None = None,
) -> dict[str, Any]:
    """:func:`run_demo` for callers already inside an event loop."""
    date = app.today()
    rules = demo_rules(DEMO_TITLE, date, DEMO_COUNT)
    out = console or Console(quiet=True)
    out.print(
        f"[bold]daily news demo[/bold]: {DEMO_COUNT} posts from "
        f"{DEMO_COUNT * 5} candidates, offline; waits shortened for the demo "
        f"(generation ≤ {DEMO_ENV['ALIYUN_IMAGE_TIMEOUT_S']}s, "
        f"{DEMO_ENV['ALIYUN_IMAGE_RETRY_SLEEP_S']}s between attempts)"
    )
    settings = SimSettings(rules=rules, task_seconds=0.05)
    with image_backend({}, settings) as backend:
        assert backend.simulator is not None
        client = AliyunImageClient(
            backend.simulator.dashscope_base_url, SIM_KEY, poll_interval=0.02
        )
        runtime = Runtime(client, Path(data_dir), out, policy=image_policy(DEMO_ENV))
        summary = await app.run_batch(
            runtime, title=DEMO_TITLE, count=DEMO_COUNT, date=date, key=None
        )
        stats = backend.simulator.stats()["prompts"]
    summary["simulator"] = {
        prompt: {"tasks": entry["routes"].get("dashscope_submit", 0), "images": entry["produced"]}
        for prompt, entry in stats.items()
    }
    app.print_summary(out, summary, PostStore(data_dir))
    return summary


def run_demo(data_dir: str | os.PathLike[str], console: Console | None = None) -> dict[str, Any]:
    """Run the demo batch into ``data_dir``; print its progress to ``console``; return the
    summary (run id and status, succeeded and failed post ids, drafts, failed attempts,
    and per prompt the tasks the simulator ran and the images it made)."""
    with app.file_logging(data_dir):
        return asyncio.run(run_demo_async(data_dir, console))
