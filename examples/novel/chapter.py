"""What the model is asked for, and how its streamed answer becomes the seed's events.

The model is asked for a title line, the chapter's text, then ``【选项】`` and three
numbered choices. The answer is read as it streams: the first line is the title when it
looks like one (short; ``#`` and ``标题：`` stripped), else the title is ``第N章`` and the
line is text; text is passed on as it arrives, up to the ``【选项】`` marker; the choices
after it are parsed at the end (a model that offers fewer than two gets the default ones).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OPTIONS_MARKER = "【选项】"
#: The choices offered when the model's answer carries fewer than two of its own.
DEFAULT_OPTIONS = ("继续沿着眼前的路走下去", "停下来，仔细观察周围", "转身寻找另一条出路")
#: A first line longer than this is text, not a title.
MAX_TITLE = 40
# Read this far without a line break and the answer has no title line.
_HEAD_LIMIT = 80
_TITLE_PREFIXES = ("#", "标题：", "标题:", "Title:")
_OPTION = re.compile(r"^\s*(?:[-*•]|\(?[0-9一二三四五ABCDEabcde]+[.、:：)）])\s*(.+?)\s*$")
_PREVIOUS_TAIL = 400

SYSTEM_PROMPT = (
    "你是一位互动小说作者。按下面的格式写一章：第一行只写本章标题；然后是正文（800字以内）；"
    f"最后单独一行写“{OPTIONS_MARKER}”，其后三行各写一个读者可以选择的行动，编号 1. 2. 3.。"
)


def default_title(number: int) -> str:
    return f"第{number}章"


def messages(
    title: str,
    premise: str,
    number: int,
    previous: Mapping[str, Any] | None = None,
    choice: str | None = None,
) -> list[dict[str, str]]:
    """The chat messages for chapter ``number``: chapter 1 from the novel's settings, a
    later one from the end of the previous chapter and the reader's choice on it."""
    parts = [f"小说《{title}》", f"设定：{premise}"]
    if previous is not None:
        tail = str(previous.get("content") or "")[-_PREVIOUS_TAIL:]
        parts.append(f"上一章《{previous.get('title') or ''}》的结尾：{tail}")
    if choice is not None:
        parts.append(f"读者的选择：{choice}")
    parts.append(f"请写第{number}章。")
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(parts)},
    ]


@dataclass(slots=True)
class ChapterReader:
    """Reads a streamed answer: :meth:`feed` each piece, then :meth:`close`.

    Both return what to pass on, in order: ``("title", text)`` once, before any
    ``("text", piece)``. The chapter's text is exactly the pieces passed on, joined.
    """

    number: int
    title: str | None = None
    _head: str = ""
    _pending: str = ""
    _tail: list[str] = field(default_factory=list)
    _text: list[str] = field(default_factory=list)
    _in_options: bool = False

    def feed(self, piece: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.title is None:
            self._head += piece
            if "\n" not in self._head and len(self._head) <= _HEAD_LIMIT:
                return out
            out.append(("title", self._decide_title()))
            piece, self._head = self._head, ""
        out.extend(self._body(piece, final=False))
        return out

    def close(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.title is None:
            out.append(("title", self._decide_title()))
            piece, self._head = self._head, ""
            out.extend(self._body(piece, final=True))
        else:
            out.extend(self._body("", final=True))
        return out

    def result(self) -> dict[str, Any]:
        """``{title, text, options}`` (call after :meth:`close`)."""
        options = parse_options("".join(self._tail))
        return {
            "title": self.title or default_title(self.number),
            "text": "".join(self._text),
            "options": list(options),
        }

    def _decide_title(self) -> str:
        line, newline, rest = self._head.partition("\n")
        candidate = line.strip()
        for prefix in _TITLE_PREFIXES:
            candidate = candidate.removeprefix(prefix).strip()
        candidate = candidate.strip("#*《》 ")
        if newline and 0 < len(candidate) <= MAX_TITLE and OPTIONS_MARKER not in line:
            self.title = candidate
            self._head = rest
        else:
            self.title = default_title(self.number)
        return self.title

    def _body(self, piece: str, *, final: bool) -> list[tuple[str, str]]:
        if self._in_options:
            self._tail.append(piece)
            return []
        pending = self._pending + piece
        if not self._text:  # the blank lines between the title and the text
            pending = pending.lstrip("\r\n")
        at = pending.find(OPTIONS_MARKER)
        if at >= 0:
            self._in_options = True
            self._tail.append(pending[at + len(OPTIONS_MARKER) :])
            send, self._pending = pending[:at], ""
        elif final:
            send, self._pending = pending, ""
        else:
            keep = _marker_prefix(pending)
            send, self._pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
        if not send:
            return []
        self._text.append(send)
        return [("text", send)]


def _marker_prefix(text: str) -> int:
    """How many trailing characters of ``text`` could begin the options marker."""
    for size in range(min(len(OPTIONS_MARKER) - 1, len(text)), 0, -1):
        if OPTIONS_MARKER.startswith(text[-size:]):
            return size
    return 0


def parse_options(text: str) -> Sequence[str]:
    """The numbered choices after the marker; the default ones when fewer than two."""
    found = []
    for line in text.splitlines():
        match = _OPTION.match(line)
        if match and match.group(1):
            found.append(match.group(1))
    return tuple(found[:5]) if len(found) >= 2 else DEFAULT_OPTIONS
