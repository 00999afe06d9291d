"""Seed 001's HTTP API on FastAPI.

    POST /api/v1/novels                                    {"title", "premise"}
    GET  /                                                 the reading page
    GET  /api/v1/novels/{novel_id}
    POST /api/v1/novels/{novel_id}/chapters/generate       {"chapter_number": N}  → SSE
    GET  /api/v1/novels/{novel_id}/chapters/latest         → the chapter, or null
    GET  /api/v1/novels/{novel_id}/chapters/{n}
    GET  /api/v1/novels/{novel_id}/chapters/{n}/stream     → SSE (EventSource; starts nothing)
    POST /api/v1/novels/{novel_id}/chapters/{n}/choice     {"option_id"}

The reader is the ``X-User-Id`` header (default 1). ``create_app(home)`` opens a
:class:`~examples.novel.app.NovelApp` for the app's lifespan (its worker writes chapters).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from examples.novel.app import ChapterStream, NovelApp, NovelError, chapter_json
from examples.novel.page import PAGE
from examples.novel.sse import KEEP_ALIVE_S, SSE_CONTENT_TYPE, SSE_HEADERS

#: The reader when a request names none.
DEFAULT_USER = 1


#: The largest id or number SQLite holds (a larger one would fail as a server error).
_LARGEST = 2**63 - 1


class NovelIn(BaseModel):
    """A novel's settings: chapter 1 is written from them."""

    title: str = Field(min_length=1, max_length=200)
    premise: str = Field(min_length=1, max_length=4000)


class GenerateIn(BaseModel):
    """Which chapter to generate (0: the latest)."""

    chapter_number: int = Field(default=0, ge=0, le=_LARGEST)


class ChoiceIn(BaseModel):
    """The option the reader chose on a chapter."""

    option_id: int = Field(ge=1, le=_LARGEST)


def current_user(x_user_id: Annotated[int | None, Header(ge=1, le=_LARGEST)] = None) -> int:
    """The reader: the ``X-User-Id`` header, or the default user."""
    return DEFAULT_USER if x_user_id is None else x_user_id


User = Annotated[int, Depends(current_user)]
NovelId = Annotated[int, PathParam(ge=1, le=_LARGEST)]
Number = Annotated[int, PathParam(ge=1, le=_LARGEST)]


def create_app(
    home: str | Path | None = None, *, poll: float = 0.5, keep_alive: float = KEEP_ALIVE_S
) -> FastAPI:
    """The API on the data directory ``home`` (default ``$NOVEL_HOME``, else ``$REGEN_HOME``).

    ``poll``: how often the worker looks for runs to take over (runs started here wake it
    at once). ``keep_alive``: seconds of silence before an SSE keep-alive comment.
    """
    holder: dict[str, NovelApp] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with NovelApp(home, poll=poll) as opened:
            holder["app"] = opened
            yield
        holder.clear()

    api = FastAPI(title="interactive novel on regen", lifespan=lifespan)

    def novels() -> NovelApp:
        return holder["app"]

    @api.exception_handler(NovelError)
    async def refused(_: Request, exc: NovelError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    def streaming(opened: ChapterStream) -> StreamingResponse:
        return StreamingResponse(
            novels().stream(opened, keep_alive), media_type=SSE_CONTENT_TYPE, headers=SSE_HEADERS
        )

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        """The reading page."""
        return PAGE

    @api.post("/api/v1/novels", status_code=201)
    async def create_novel(body: NovelIn, user: User) -> dict[str, Any]:
        """Create a novel from its settings."""
        return novels().create_novel(user, body.title, body.premise).to_dict()

    @api.get("/api/v1/novels/{novel_id}")
    async def get_novel(novel_id: NovelId, user: User) -> dict[str, Any]:
        """A novel's settings."""
        return novels().novel(novel_id, user).to_dict()

    @api.post("/api/v1/novels/{novel_id}/chapters/generate", response_model=None)
    async def generate_chapter(
        novel_id: NovelId,
        body: GenerateIn,
        user: User,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        """The chapter's SSE stream: start it, attach to it, or clean up a failed one and
        start again; a completed chapter is refused (400 章节已生成完成)."""
        opened = await novels().open_chapter(novel_id, user, body.chapter_number, last_event_id)
        return streaming(opened)

    @api.get("/api/v1/novels/{novel_id}/chapters/latest")
    async def latest_chapter(novel_id: NovelId, user: User) -> dict[str, Any] | None:
        """The latest chapter (``status``: generating / completed / failed), or null."""
        return await _chapter(novels(), novel_id, user, 0)

    @api.get("/api/v1/novels/{novel_id}/chapters/{number}")
    async def get_chapter(novel_id: NovelId, number: Number, user: User) -> dict[str, Any]:
        """A chapter."""
        found = await _chapter(novels(), novel_id, user, number)
        if found is None:
            raise NovelError(404, "章节不存在")
        return found

    @api.get("/api/v1/novels/{novel_id}/chapters/{number}/stream", response_model=None)
    async def chapter_stream(
        novel_id: NovelId,
        number: Number,
        user: User,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """The chapter's SSE stream for ``EventSource`` (starts nothing; 204 once nothing
        follows ``Last-Event-ID`` in an ended generation, so the browser stops)."""
        opened = await novels().read_chapter(novel_id, user, number, last_event_id)
        return Response(status_code=204) if opened is None else streaming(opened)

    @api.post("/api/v1/novels/{novel_id}/chapters/{number}/choice", status_code=201)
    async def choose(
        novel_id: NovelId, number: Number, body: ChoiceIn, user: User
    ) -> dict[str, Any]:
        """Record the reader's choice on a completed chapter (until the next one is being
        or has been written from it; a failed next chapter is written again from it)."""
        novels().choose(user, novel_id, number, body.option_id)
        return {"chapter_number": number, "option_id": body.option_id, "next_chapter": number + 1}

    return api


async def _chapter(app: NovelApp, novel_id: int, user: int, number: int) -> dict[str, Any] | None:
    found = await app.chapter(novel_id, user, number)
    if found is None:
        return None
    chosen = app.records.choice(user, novel_id, found.number)
    return chapter_json(found, None if chosen is None else chosen.id)
