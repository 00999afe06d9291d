"""One chapter's generation as a regen flow: ``write`` (streamed) → ``publish``.

- ``write`` asks the chat model for the chapter (one streamed request per attempt, under
  ``CHAT_POLICY``) and emits the seed's ``summary`` (``{title}``) before its text, which it
  yields piece by piece: regen appends each piece to the run's event log as a ``chunk``
  (sent as the seed's ``content``). When an attempt fails mid-stream, regen writes
  ``stream.reset`` and the next attempt starts again with a new ``summary``.
- ``publish`` writes the text and its options into the app's records — the chapter is
  then ``completed`` — and emits ``complete`` (``{options}`` with their ids).

The run's business key is ``novel:{id}:chapter:{n}:g{generation}``: one run per
generation of a chapter, whoever asks and however often. Whichever process executes a
run (the app's worker, ``regen worker``, a take-over after a crash) opens the resources
from the run's params and the environment (:func:`open_resources`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.novel.chapter import ChapterReader
from examples.novel.records import RECORDS_FILE, Records
from regen.engine import Flow, Param, StepContext
from regen.providers import OpenAIProvider, Transport
from regen.retry import ConfigError, Policy
from regen.store import home as regen_home

logger = logging.getLogger("examples.novel")

FLOW_NAME = "novel-chapter"
#: The key the in-process simulator is called with (it accepts any non-empty key).
SIM_KEY = "sk-regen-sim-novel"
#: Seconds between the simulator's streamed words (so the text visibly streams).
SIM_CHUNK_DELAY = 0.05

#: Per chapter attempt: 3 attempts of at most 120 s each, waiting 0.5 s then 1 s between
#: them. ``NOVEL_CHAT_MAX_ATTEMPTS``, ``…_TIMEOUT_S``, ``…_RETRY_SLEEP_S`` override.
CHAT_POLICY = Policy.from_env(
    "NOVEL_CHAT", attempts=3, timeout=120.0, wait=0.5, multiplier=2.0, max_wait=8.0
)


def business_key(novel_id: int, number: int, generation: int) -> str:
    """The run's key: one run per generation of a chapter."""
    return f"novel:{novel_id}:chapter:{number}:g{generation}"


def data_home() -> Path:
    """``$NOVEL_HOME``, else regen's data directory (``$REGEN_HOME`` or ``./.regen``)."""
    chosen = os.environ.get("NOVEL_HOME")
    return Path(chosen).expanduser() if chosen else regen_home()


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Where chapters are written: an OpenAI-compatible API (``None`` base URL: OpenAI's)."""

    base_url: str | None
    api_key: str
    model: str


def chat_config(environ: Mapping[str, str] | None = None) -> ChatConfig | None:
    """The chat API the environment names, or ``None`` (no key: the simulator).

    ``NOVEL_API_KEY`` / ``NOVEL_BASE_URL`` / ``NOVEL_MODEL``, else ``OPENAI_API_KEY`` /
    ``OPENAI_BASE_URL`` (model ``gpt-4o-mini``).
    """
    env = os.environ if environ is None else environ
    for prefix in ("NOVEL", "OPENAI"):
        key = env.get(f"{prefix}_API_KEY") or ""
        base_url = env.get(f"{prefix}_BASE_URL") or None
        if key:
            model = env.get("NOVEL_MODEL") or "gpt-4o-mini"
            return ChatConfig(base_url, key, model)
        if base_url:
            raise ConfigError(
                f"{prefix}_BASE_URL={base_url} is set but {prefix}_API_KEY is not; set "
                "both, or neither to write chapters with regen's offline simulator"
            )
    return None


@dataclass(frozen=True, slots=True)
class NovelResources:
    """``ctx.resources`` of a chapter run: the app's records and the chat model."""

    records: Records
    chat: OpenAIProvider


@contextlib.contextmanager
def _simulator() -> Iterator[ChatConfig]:
    try:
        from regen.sim import run_simulator  # noqa: PLC0415 - the [sim] extra, offline only
    except ImportError as exc:  # pragma: no cover - the dev environment has the extra
        raise ConfigError(
            "writing chapters offline needs the simulator: pip install 'regen[sim]' "
            "(or set NOVEL_API_KEY, with NOVEL_BASE_URL for a non-OpenAI endpoint)"
        ) from exc
    with run_simulator(chunk_delay=SIM_CHUNK_DELAY) as sim:
        logger.info("novel: chapters from regen's simulator at %s", sim.openai_base_url)
        yield ChatConfig(sim.openai_base_url, SIM_KEY, "sim")


@contextlib.asynccontextmanager
async def open_resources(params: Mapping[str, Any]) -> AsyncIterator[NovelResources]:
    """The flow's resources, from the run's params and the environment; closed after.

    Without a key in the environment a simulator is started here for the execution.
    """
    home = Path(params["home"]) if params.get("home") else data_home()
    records = Records(home / RECORDS_FILE)
    with contextlib.ExitStack() as stack:
        config = chat_config() or stack.enter_context(_simulator())
        async with Transport() as transport:
            chat = OpenAIProvider(
                config.base_url,
                config.api_key,
                name="novel-chat",
                model=config.model,
                transport=transport,
            )
            yield NovelResources(records, chat)


flow = Flow(
    FLOW_NAME,
    params={
        "novel_id": int,
        "chapter_number": Param(int, ge=1),
        "generation": Param(int, ge=1),
        "messages": Param(list, help="the chat messages the chapter is written from"),
        "home": Param(str, default="", help="the app's data directory; empty: $NOVEL_HOME"),
    },
    description="Write one chapter of an interactive novel, streamed.",
    resources=open_resources,
)


def _resources(ctx: StepContext) -> NovelResources:
    resources: NovelResources = ctx.resources
    return resources


@flow.stream(policy=CHAT_POLICY)
async def write(ctx: StepContext) -> AsyncIterator[str]:
    """The chapter, streamed: ``summary`` first, then its text; ``{title, text, options}``."""
    reader = ChapterReader(int(ctx.params["chapter_number"]))
    chat = _resources(ctx).chat

    def passed_on(parts: list[tuple[str, str]]) -> Iterator[str]:
        for kind, value in parts:
            if kind == "title":
                ctx.emit("summary", {"title": value})
            else:
                yield value

    async for piece in chat.stream_once(ctx.params["messages"]):
        for text in passed_on(reader.feed(piece)):
            yield text
    for text in passed_on(reader.close()):
        yield text
    ctx.set_output(reader.result())


@flow.step()
async def publish(ctx: StepContext) -> dict[str, Any]:
    """The chapter written into the records (``completed``), then ``complete``."""
    chapter = ctx.results["write"]
    options = _resources(ctx).records.complete_chapter(
        int(ctx.params["novel_id"]),
        int(ctx.params["chapter_number"]),
        int(ctx.params["generation"]),
        chapter["title"],
        chapter["text"],
        chapter["options"],
    )
    shown = [option.to_dict() for option in options]
    ctx.emit("complete", {"options": shown})
    return {"options": shown}
