"""The app: seed 001's chapter state table on regen, and a worker that writes chapters.

``open_chapter`` is the seed's ``generate_chapter`` without the HTTP: it finds the
chapter the request is about, then, by its state —

==============  ======================================================================
no chapter      start its generation (chapter 1 from the novel's settings; a later one
                needs the reader's choice on the previous chapter)
generating      attach to its stream (after ``Last-Event-ID``, when it names this
                generation)
failed          clean it up (the chapter's row replaced by the next generation's; the
                reader's earlier choices and chapters untouched; the failed run's log,
                if still there, simply no longer read) and start the new generation
completed       refuse (``章节已生成完成``)
==============  ======================================================================

— and returns what to stream: the run of the chapter's generation and where to start.
Starting is idempotent by the run's business key, so concurrent requests start one
generation and all attach to it. Generation runs on the app's regen worker, never in a
request: a reader who goes away does not stop it, and a run whose process died is taken
over by the worker of whichever process runs next (its lease expired) and resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.novel import chapter as chapters
from examples.novel import sse
from examples.novel.flow import FLOW_NAME, business_key, data_home, flow
from examples.novel.records import (
    COMPLETED,
    FAILED,
    GENERATING,
    RECORDS_FILE,
    Chapter,
    Novel,
    Records,
)
from regen.engine import Engine, InvalidTransition, RunNotFound, RunStatus

logger = logging.getLogger("examples.novel")

CHAPTER_COMPLETED = "章节已生成完成"
NO_CHOICE = "未找到用户选择记录"
NO_NOVEL = "小说不存在"
NO_CHAPTER = "章节不存在"
# A clean-up and a start can race; a request looks again this many times.
_TRIES = 5


class NovelError(Exception):
    """A request the app refuses: an HTTP status and the seed's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class ChapterStream:
    """What a request streams: the run of one generation of a chapter, after ``after``."""

    novel_id: int
    number: int
    generation: int
    run_id: str
    after: int


class NovelApp:
    """The app on one data directory (``regen.db`` and ``novel.db``). Use ``async with``:
    it runs the worker that writes chapters while open."""

    def __init__(
        self, home: str | Path | None = None, *, worker: bool = True, poll: float = 0.5
    ) -> None:
        self.home = (Path(home) if home is not None else data_home()).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.records = Records(self.home / RECORDS_FILE)
        self.engine = Engine(home=self.home)
        self.engine.register(flow)
        self._run_worker = worker
        self._poll = poll
        self._stop = asyncio.Event()
        self._worker: asyncio.Task[int] | None = None

    def __repr__(self) -> str:
        return f"NovelApp({str(self.home)!r})"

    async def __aenter__(self) -> NovelApp:
        for chapter in self.records.generating():
            await self.status(chapter)  # a run that failed while no one looked
        if self._run_worker:
            self._stop.clear()
            self._worker = asyncio.create_task(
                self.engine.worker(
                    flows=[FLOW_NAME], concurrency=8, poll=self._poll, stop=self._stop
                )
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._worker is not None:
            self._stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self.engine.aclose()

    # --- novels and choices -------------------------------------------------------------

    def create_novel(self, user_id: int, title: str, premise: str) -> Novel:
        return self.records.create_novel(user_id, title, premise)

    def novel(self, novel_id: int, user_id: int) -> Novel:
        """The reader's novel (another reader's is not found either)."""
        novel = self.records.novel(novel_id)
        if novel is None or novel.user_id != user_id:
            raise NovelError(404, NO_NOVEL)
        return novel

    def choose(self, user_id: int, novel_id: int, number: int, option_id: int) -> Chapter:
        """Record the reader's choice on a completed chapter (changed, too, while the next
        chapter is failed: it is written again from the new choice); the chapter."""
        self.novel(novel_id, user_id)
        found = self.records.chapter(novel_id, number)
        if found is None:
            raise NovelError(404, NO_CHAPTER)
        if found.status != COMPLETED:
            raise NovelError(409, "章节尚未生成完成，不能选择")
        if option_id not in {o.id for o in found.options}:
            raise NovelError(400, f"选项 {option_id} 不属于第{number}章")
        if not self.records.choose(user_id, novel_id, number, option_id):
            raise NovelError(409, "下一章已开始生成，不能更改选择")
        return found

    # --- chapters -----------------------------------------------------------------------

    async def status(self, found: Chapter) -> Chapter:
        """The chapter with its status brought up to date: a ``generating`` chapter whose
        run failed (or was cancelled) is ``failed`` from then on."""
        if found.status != GENERATING:
            return found
        run = await self.engine.find_run(
            flow, business_key(found.novel_id, found.number, found.generation)
        )
        if run is None or not run.status.finished or run.retry_at is not None:
            return found  # not started yet (a request starts it), or still going
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            reason = sse.failure_reason(run.error)
            self.records.mark_failed(found.novel_id, found.number, found.generation, reason)
        return self.records.chapter(found.novel_id, found.number) or found

    async def chapter(self, novel_id: int, user_id: int, number: int) -> Chapter | None:
        """Chapter ``number`` (0: the latest), its status up to date; ``None`` if none."""
        self.novel(novel_id, user_id)
        found = (
            self.records.latest_chapter(novel_id)
            if number == 0
            else self.records.chapter(novel_id, number)
        )
        return None if found is None else await self.status(found)

    async def open_chapter(
        self, novel_id: int, user_id: int, number: int, last_event_id: str | None = None
    ) -> ChapterStream:
        """The seed's state table (see the module docstring): what to stream, or a
        :class:`NovelError`."""
        novel = self.novel(novel_id, user_id)
        if number == 0:
            latest = self.records.latest_chapter(novel_id)
            number = latest.number if latest is not None else 1
        for _ in range(_TRIES):
            found = self.records.chapter(novel_id, number)
            if found is None:
                prompt = self._messages(novel, user_id, number)
                return await self._attach(self.records.create_chapter(novel_id, number), prompt, 0)
            found = await self.status(found)
            if found.status == GENERATING:
                prompt = self._messages(novel, user_id, number)
                after = sse.resume_after(last_event_id, found.generation)
                return await self._attach(found, prompt, after)
            if found.status == COMPLETED:
                resumed = await self._rest_of(found, last_event_id)
                if resumed is None:
                    raise NovelError(400, CHAPTER_COMPLETED)
                return resumed
            if found.status == FAILED:
                # A reader cut off before the failure was seen gets the rest, ending with
                # `failed`: only "重新生成" (nothing of it left unseen) writes it again.
                resumed = await self._rest_of(found, last_event_id)
                if resumed is not None:
                    return resumed
                self._messages(novel, user_id, number)  # refused before anything is touched
                if self.records.replace_failed(novel_id, number, found.generation):
                    await self._forget_generation(found)
                    logger.info(
                        "novel: chapter cleaned up for a new generation",
                        extra={"novel_id": novel_id, "chapter": number, "failed": found.generation},
                    )
                # Cleaned up, by this request or a concurrent one: look again, and attach.
        raise NovelError(409, "章节状态正在变化，请稍后重试")

    async def read_chapter(
        self, novel_id: int, user_id: int, number: int, last_event_id: str | None = None
    ) -> ChapterStream | None:
        """A chapter's stream without starting anything (``GET``, for ``EventSource``):
        what follows ``last_event_id``; ``None`` when the generation has ended and
        nothing follows (a reconnecting ``EventSource`` is told to stop)."""
        found = await self.chapter(novel_id, user_id, number)
        if found is None:
            raise NovelError(404, NO_CHAPTER)
        run = await self.engine.find_run(
            flow, business_key(found.novel_id, found.number, found.generation)
        )
        if run is None:
            if found.status == GENERATING:  # asked for, its run not made yet: nothing yet
                raise NovelError(409, "章节生成尚未开始，请用 POST 生成")
            raise NovelError(410, "章节的生成记录已清理")
        after = sse.resume_after(last_event_id, found.generation)
        if run.status.finished:
            rest, _ = await sse.written(self.engine, run.id, found.generation, after)
            if not rest:
                return None
        return ChapterStream(found.novel_id, found.number, found.generation, run.id, after)

    def stream(
        self, opened: ChapterStream, keep_alive: float = sse.KEEP_ALIVE_S
    ) -> AsyncIterator[str]:
        """The SSE body of an opened chapter stream (a keep-alive comment after
        ``keep_alive`` seconds of silence)."""
        return sse.frames(self._events(opened), keep_alive)

    async def _events(self, opened: ChapterStream) -> AsyncIterator[sse.WireEvent]:
        async for wire in sse.chapter_events(
            self.engine, opened.run_id, opened.generation, opened.after
        ):
            yield wire
        found = self.records.chapter(opened.novel_id, opened.number)
        if found is not None:
            await self.status(found)  # a failed run marks its chapter failed at once

    async def _forget_generation(self, failed: Chapter) -> None:
        """The seed's clean-up of a failed chapter's stream (its Redis data): the failed
        generation's run and its event log are deleted. One already gone is no error."""
        key = business_key(failed.novel_id, failed.number, failed.generation)
        run = await self.engine.find_run(flow, key)
        if run is None:
            return
        try:
            await self.engine.delete(run.id)
        except (RunNotFound, InvalidTransition) as exc:  # gone, or not over: left to gc
            logger.info("novel: failed generation's run kept: %s", exc, extra={"run_id": run.id})

    async def _rest_of(self, found: Chapter, last_event_id: str | None) -> ChapterStream | None:
        """An ended chapter's stream after ``last_event_id`` of its generation, when
        something follows it (a reader cut off before the end); else ``None``."""
        after = sse.resume_after(last_event_id, found.generation)
        if not after:
            return None
        run = await self.engine.find_run(
            flow, business_key(found.novel_id, found.number, found.generation)
        )
        if run is None:
            return None
        rest, _ = await sse.written(self.engine, run.id, found.generation, after)
        if not rest:
            return None
        return ChapterStream(found.novel_id, found.number, found.generation, run.id, after)

    def _messages(self, novel: Novel, user_id: int, number: int) -> list[dict[str, str]]:
        """The chat messages for chapter ``number``; refused without the reader's choice
        on the previous chapter."""
        if number == 1:
            return chapters.messages(novel.title, novel.premise, 1)
        previous = self.records.chapter(novel.id, number - 1)
        choice = self.records.choice(user_id, novel.id, number - 1)
        if previous is None or previous.status != COMPLETED or choice is None:
            raise NovelError(400, NO_CHOICE)
        return chapters.messages(
            novel.title,
            novel.premise,
            number,
            {"title": previous.title, "content": previous.content},
            choice.text,
        )

    async def _attach(
        self, found: Chapter, prompt: list[dict[str, str]], after: int
    ) -> ChapterStream:
        params: dict[str, Any] = {
            "novel_id": found.novel_id,
            "chapter_number": found.number,
            "generation": found.generation,
            "messages": prompt,
            "home": str(self.home),
        }
        key = business_key(found.novel_id, found.number, found.generation)
        started = await self.engine.start(flow, params, key=key, on_failed="return")
        if started.created:
            logger.info(
                "novel: chapter generation started",
                extra={
                    "novel_id": found.novel_id,
                    "chapter": found.number,
                    "run_id": started.run.id,
                },
            )
        return ChapterStream(found.novel_id, found.number, found.generation, started.run.id, after)


def chapter_json(found: Chapter | None, choice: int | None = None) -> dict[str, Any] | None:
    """A chapter as the API shows it (``None`` stays ``None``)."""
    if found is None:
        return None
    return {
        "novel_id": found.novel_id,
        "chapter_number": found.number,
        "generation": found.generation,
        "status": found.status,
        "title": found.title,
        "content": found.content,
        "options": [o.to_dict() for o in found.options],
        "error": found.error,
        "chosen_option_id": choice,
    }
