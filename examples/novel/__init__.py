"""Seed 001 on regen: an interactive novel whose chapters stream to the reader.

A chapter is one regen run (``write`` streams the seed's ``summary`` and ``content``,
``publish`` stores it and sends ``complete`` with the options), started idempotently by
the business key of its generation; the seed's state table (generating → attach, failed →
clean up and regenerate, completed → refuse) in :class:`NovelApp`; the API with resumable
SSE in :mod:`examples.novel.web`. See README.md.
"""

from __future__ import annotations

from examples.novel.app import (
    CHAPTER_COMPLETED,
    NO_CHOICE,
    ChapterStream,
    NovelApp,
    NovelError,
    chapter_json,
)
from examples.novel.chapter import DEFAULT_OPTIONS, OPTIONS_MARKER, ChapterReader
from examples.novel.flow import CHAT_POLICY, FLOW_NAME, business_key, chat_config, flow
from examples.novel.records import COMPLETED, FAILED, GENERATING, Chapter, Novel, Option, Records
from examples.novel.sse import WireEvent, resume_after

__all__ = [
    "CHAPTER_COMPLETED",
    "CHAT_POLICY",
    "COMPLETED",
    "DEFAULT_OPTIONS",
    "FAILED",
    "FLOW_NAME",
    "GENERATING",
    "NO_CHOICE",
    "OPTIONS_MARKER",
    "Chapter",
    "ChapterReader",
    "ChapterStream",
    "Novel",
    "NovelApp",
    "NovelError",
    "Option",
    "Records",
    "WireEvent",
    "business_key",
    "chapter_json",
    "chat_config",
    "flow",
    "resume_after",
]
