"""The app: one data directory with regen's store and the app's records, and the runs of
the stage flow started, executed, retried, followed and summed up.

``<home>`` is ``$STORYBOARD_HOME``, else ``$REGEN_HOME``, else ``./.regen``; it holds
``regen.db`` (runs, checkpoints, event log, result cache), ``artifacts/`` (the images,
content-addressed) and ``storyboard.db`` (projects, storyboards, providers, image records).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from examples.storyboard import events
from examples.storyboard.flow import flow
from examples.storyboard.models import (
    IMAGE_COMPLETED,
    IMAGE_STAGE,
    STAGE_COMPLETED,
    STAGE_FAILED,
    STAGE_PARTIAL,
    STAGE_PROCESSING,
    StageKey,
    StageResult,
)
from examples.storyboard.records import RECORDS_FILE, Records
from examples.storyboard.resources import StageResources, data_home, key_environ
from examples.storyboard.validation import ValidationError
from regen.engine import Engine, Run, RunStatus
from regen.providers import MemoryState, Transport, sniff

logger = logging.getLogger("examples.storyboard")


class StoryboardApp:
    """The stage's runs on one data directory. Close it with :meth:`close`."""

    def __init__(
        self, home: str | os.PathLike[str] | None = None, *, engine: Engine | None = None
    ) -> None:
        self.home = (Path(home) if home is not None else data_home()).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.records = Records.at(self.home / RECORDS_FILE)
        self._owns_engine = engine is None
        self.engine = engine or Engine(home=self.home)
        self.engine.register(flow)
        self._tasks: set[asyncio.Task[Run]] = set()
        #: The image providers' circuit breakers, shared by this app's runs: a provider
        #: found down stays skipped (its fallback serving) until its breaker lets a probe by.
        self.provider_state = MemoryState()

    def __repr__(self) -> str:
        return f"StoryboardApp({str(self.home)!r})"

    # --- runs ------------------------------------------------------------------------------

    async def start(self, project_id: str, storyboard_ids: Sequence[str] | None = None) -> str:
        """Queue a stage run for the project (every storyboard, or those ids); its id.

        While a stage run of the project is not finished, the same request attaches to it
        (its id is returned, no run is made), whoever started it, in this process or
        another; a request for other storyboards is refused (``ValidationError``
        ``stage_busy``) until it ends. The project's current run is named by a business
        key kept in the records, so regen itself makes one run per key.
        """
        params: dict[str, Any] = {"project_id": str(project_id), "home": str(self.home)}
        if isinstance(storyboard_ids, str):
            raise TypeError("storyboard_ids must be a list of ids, not one string")
        if storyboard_ids is not None:
            params["storyboard_ids"] = [str(i) for i in storyboard_ids]
        selection = json.dumps(params.get("storyboard_ids"))
        current = self.records.stage_run_key(str(project_id))
        if current is not None:
            run = await self.engine.find_run(flow, current.key)
            if run is None or not run.status.finished:  # claimed, or still running
                return await self._attach(project_id, params, current, selection)
        claimed = self.records.claim_stage_key(
            str(project_id), selection, replacing=None if current is None else current.key
        )
        return await self._attach(project_id, params, claimed, selection)

    async def _attach(
        self, project_id: str, params: dict[str, Any], claimed: StageKey, selection: str
    ) -> str:
        if claimed.selection != selection:
            raise ValidationError(
                "stage_busy",
                f"项目 {project_id} 的文生图阶段正在为另一组分镜运行：等它结束后再试",
            )
        started = await self.engine.start(flow, params, key=claimed.key, on_failed="return")
        return started.run.id

    async def execute(self, run_id: str) -> Run:
        """Execute a queued run here, to its end, with this app's records and a connection
        pool of its own (a worker executing it would open the flow's own instead)."""
        project_id = str((await self.engine.get_run(run_id)).params["project_id"])
        async with Transport() as transport:
            resources = StageResources(
                self.records,
                transport,
                key_environ(self.records, project_id),
                provider_state=self.provider_state,
            )
            return await self.engine.execute(run_id, resources=resources)

    def launch(self, run_id: str) -> asyncio.Task[Run]:
        """Execute a run in the background (it goes on if whoever watched it goes away).

        A run already executing (here or in another process) is left to its executor: the
        engine claims only a queued run, or one whose executor died.
        """
        task = asyncio.get_running_loop().create_task(self.execute(run_id))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Run]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("storyboard: a stage run crashed", exc_info=task.exception())

    async def retry(self, run_id: str) -> Run:
        """Queue a failed or partial run again: only the storyboards that failed run."""
        return await self.engine.retry(run_id)

    def join(self, timeout: float = 30.0) -> bool:
        """Block this thread until the runs launched in the background (on any loop, e.g. a
        server's) have ended; ``False`` if some still run after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    async def wait_idle(self) -> None:
        """Wait for the runs launched in the background on this loop."""
        loop = asyncio.get_running_loop()
        mine = [t for t in self._tasks if t.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)

    # --- reading ---------------------------------------------------------------------------

    async def events(
        self, run_id: str, *, after: int = 0, follow: bool = True
    ) -> AsyncIterator[dict[str, Any]]:
        """The run's events in the seed's vocabulary, read from regen's event log (from
        ``after``), following it until the run ends."""
        async for entry in self.engine.events(run_id, after=after, follow=follow):
            event = events.from_log(entry)
            if event is not None:
                yield event

    async def result(self, run_id: str) -> StageResult:
        """The stage result of a run, from its image records (and its error)."""
        run = await self.engine.get_run(run_id)
        images = self.records.run_images(run_id)
        if not images:  # refused by validation: no record was made
            error = (run.error or {}).get("message") if run.status.finished else None
            return StageResult(
                success=False,
                error=error,
                run_id=run_id,
                message=error or "",
                data=_counts(0, [], 0),
            )
        ok = [image.id for image in images if image.status == IMAGE_COMPLETED]
        failed = len(images) - len(ok)
        if not run.status.finished or run.status is RunStatus.CANCELLED:
            status = STAGE_PROCESSING if not run.status.finished else STAGE_FAILED
        else:
            status = STAGE_COMPLETED if not failed else (STAGE_PARTIAL if ok else STAGE_FAILED)
        stage = self.records.stage(str(run.params["project_id"]), IMAGE_STAGE)
        shown = None if stage is None else {**stage.to_event(), "status": status}
        errors = [image.error for image in images if image.error]
        error = (
            None
            if not failed
            else f"{failed} 个分镜图片生成失败" + (f"：{errors[0]}" if errors else "")
        )
        message = {
            STAGE_COMPLETED: "图片生成完成",
            STAGE_PARTIAL: "图片生成部分完成",
            STAGE_FAILED: "图片生成失败",
        }.get(status, "图片生成中")
        return StageResult(
            success=status in (STAGE_COMPLETED, STAGE_PARTIAL),
            data=_counts(len(images), ok, failed),
            error=error,
            message=message,
            stage=shown,
            run_id=run_id,
        )

    def image_file(self, image_id: str) -> tuple[bytes, str] | None:
        """An image's bytes and media type (what ``image_url`` serves), or ``None``."""
        found = self.records.images(id=image_id)
        file = Path(found[0].file_path) if found and found[0].file_path else None
        if file is None or not file.is_file():
            return None
        data = file.read_bytes()
        return data, f"image/{sniff(data) or 'png'}"

    # --- life cycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the engine's threads and close its store (runs still executing fail and
        can be retried)."""
        for task in list(self._tasks):
            with contextlib.suppress(RuntimeError):  # its loop has closed
                task.get_loop().call_soon_threadsafe(task.cancel)
        if self._owns_engine:
            self.engine.close()


def _counts(total: int, ok: list[str], failed: int) -> dict[str, Any]:
    return {
        "total_storyboards": total,
        "success_count": len(ok),
        "failed_count": failed,
        "generated_image_ids": ok,
    }


_apps: dict[Path, StoryboardApp] = {}
_apps_lock = threading.Lock()


def default_app() -> StoryboardApp:
    """The app on :func:`data_home` (opened once per directory, per process)."""
    home = data_home().resolve()
    with _apps_lock:
        app = _apps.get(home)
        if app is None:
            app = _apps[home] = StoryboardApp(home)
        return app


def close_default_apps() -> None:
    """Close every app :func:`default_app` opened."""
    with _apps_lock:
        apps = list(_apps.values())
        _apps.clear()
    for app in apps:
        app.close()
