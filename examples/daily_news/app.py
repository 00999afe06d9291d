"""Running a batch: start (or resume) the run with the app's own runtime, summarise it.

The runtime (image backend, data dir, console) is built by the caller, see
:mod:`examples.daily_news.runtime`, and given to the engine as the run's resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from examples.daily_news import posts
from examples.daily_news.runtime import Runtime
from examples.daily_news.workflow import FLOW_NAME, SETUP_KINDS, flow
from regen import RegenError
from regen.engine import Engine, ItemStatus, Run, RunStatus

logger = logging.getLogger("examples.daily_news")


class BatchMismatch(RegenError):
    """The run for this title and date exists with other params: refuse to mix them."""


def today() -> str:
    """Today's date, ``YYYY-MM-DD`` (the default ``--date``)."""
    return datetime.date.today().isoformat()


def business_key(title: str, date: str) -> str:
    """One run per title and date: running the same command again resumes it."""
    return f"{FLOW_NAME}/{title}/{date}"


def open_engine(data_dir: str | os.PathLike[str]) -> Engine:
    """regen's engine on ``<data_dir>/regen/regen.db`` (unless ``REGEN_DATABASE_URL`` says
    otherwise); artifacts under ``<data_dir>/regen/artifacts``."""
    return Engine(home=Path(data_dir) / "regen")


async def run_batch(
    runtime: Runtime,
    *,
    title: str,
    count: int,
    date: str,
    assets_glob: str = "",
    key: str | None = "",
) -> dict[str, Any]:
    """Start or resume the batch and execute it to its end; returns :func:`summarize`.

    ``key``: the run's business key (``""``: :func:`business_key` of title and date;
    ``None``: a new run every time). A run of the same key left ``running`` by a process
    that died is taken over once its lease expires (``REGEN_LEASE_TTL_S``, 30 s).
    """
    params = flow.check_params(
        {"title": title, "count": count, "date": date, "assets_glob": assets_glob}
    )
    chosen = business_key(title, date) if key == "" else key
    engine = open_engine(runtime.data_dir)
    try:
        existing = None if chosen is None else await engine.find_run(FLOW_NAME, chosen)
        if existing is not None and existing.params != params:
            raise BatchMismatch(
                f"a batch for {chosen!r} already exists (run {existing.id}) with "
                f"{_differences(existing.params, params)}; rerun with its options to resume "
                "it, or pass --key to start another batch"
            )
        started = await engine.start(flow, params, key=chosen)
        run = started.run
        if started.created:
            runtime.say(f"run {run.id} started")
        elif started.retried:
            runtime.say(f"run {run.id} resumed from its failed step")
        elif not run.status.finished:
            runtime.say(f"run {run.id} resumed ({run.status})")
        run = await _execute(engine, run.id, runtime)
        return await summarize(engine, run, runtime)
    finally:
        engine.close()
        await runtime.client.aclose()


async def _execute(engine: Engine, run_id: str, runtime: Runtime) -> Run:
    told = False
    while True:
        run = await engine.execute(run_id, resources=runtime)
        if run.status.finished:
            return run
        if run.status is RunStatus.RUNNING:
            left = (run.lease_expires_at or time.time()) - time.time()
            if not told:
                runtime.say(
                    f"run {run_id} is held by {run.lease_owner} (a process that was "
                    f"killed?); taking over when its lease expires in {max(left, 0):.0f}s"
                )
                told = True
            await asyncio.sleep(min(max(left, 0.0) + 0.05, 1.0))


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{name}={old.get(name)!r} (not {new.get(name)!r})"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    )


async def summarize(engine: Engine, run: Run, runtime: Runtime) -> dict[str, Any]:
    """What the run did, from regen's store and the posts on disk."""
    illustrated = await engine.items(run.id, "illustrate", limit=10_000)
    drafted = await engine.items(run.id, "save_draft", limit=10_000)
    by_status: dict[ItemStatus, list[str]] = {}
    for item in illustrated:
        by_status.setdefault(item.status, []).append(str(item.key))
    failed_attempts = 0
    setup_failures: list[str] = []
    for post_id in by_status.get(ItemStatus.SUCCEEDED, []) + by_status.get(ItemStatus.GIVEN_UP, []):
        post = runtime.posts.load(post_id) or {}
        platform = post.get("platform") or {}
        summary = platform.get("image_generate") or {}
        if summary.get("give_up"):
            failed_attempts += int(summary.get("attempts", 0))
            if summary.get("kind") in SETUP_KINDS:
                setup_failures.append(post_id)
        else:
            failed_attempts += int((platform.get("image") or {}).get("attempts", 1)) - 1
    return {
        "run_id": run.id,
        "status": str(run.status),
        "title": run.params.get("title"),
        "date": run.params.get("date"),
        "count": run.params.get("count"),
        "candidates": run.params.get("count", 0) * 5,
        "succeeded": by_status.get(ItemStatus.SUCCEEDED, []),
        "failed": by_status.get(ItemStatus.GIVEN_UP, []),
        "skipped": len(by_status.get(ItemStatus.SKIPPED, [])),
        "drafts": [str(i.key) for i in drafted if i.status is ItemStatus.SUCCEEDED],
        "failed_attempts": failed_attempts,
        "failed_on_setup": setup_failures,
        "data_dir": str(runtime.data_dir),
    }


def print_summary(console: Console, summary: Mapping[str, Any], store: posts.PostStore) -> None:
    """The batch as a table: every post tried, its status and its attempts."""
    table = Table(
        title=f"{summary['title']} {summary['date']}: run {summary['run_id']} {summary['status']}",
        title_justify="left",
    )
    for column in ("post", "status", "attempts", "image / last error"):
        table.add_column(column)
    for post_id in sorted(summary["succeeded"] + summary["failed"]):
        post = store.load(post_id) or {}
        platform = post.get("platform") or {}
        image = platform.get("image") or {}
        generate = platform.get("image_generate") or {}
        attempts = generate.get("attempts") or image.get("attempts") or "?"
        detail = image.get("path") or (generate.get("errors") or ["?"])[-1]
        colour = "red" if post.get("status") == posts.FAILED else "green"
        table.add_row(
            post_id,
            f"[{colour}]{post.get('status')}[/{colour}]",
            str(attempts),
            escape(str(detail))[:90],
        )
    console.print(table)
    reached = len(summary["succeeded"])
    console.print(
        f"{reached} of {summary['count']} posts illustrated "
        f"({len(summary['failed'])} given up, {summary['skipped']} candidates not "
        f"needed), {len(summary['drafts'])} drafts saved; "
        f"{summary['failed_attempts']} failed attempts retried or given up. "
        f"Posts: {escape(str(store.root))}"
    )
    if setup := summary.get("failed_on_setup"):
        console.print(
            f"{len(setup)} of the given-up posts failed on a missing or refused key, or a "
            "bad parameter (auth/config/bad_request), which a retry does not mend: fix "
            "DASHSCOPE_API_KEY or the ALIYUN_IMAGE_* setting and run the same command "
            "again; those posts are tried again.",
            highlight=False,
        )


@contextlib.contextmanager
def file_logging(data_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Log regen's retries and the app's attempts to ``<data_dir>/logs/daily_news.log``."""
    path = Path(data_dir) / "logs" / "daily_news.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in ("regen", "examples.daily_news")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield path
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()
