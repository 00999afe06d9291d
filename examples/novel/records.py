"""The app's own rows (``<home>/novel.db``): novels, chapters, their options, readers' choices.

A chapter row is the seed's ``Chapter``: ``generating`` from the moment a generation is
asked for, ``completed`` when its text and options are written (by the flow's last step),
``failed`` when its generation's regen run failed. ``generation`` numbers the chapter's
attempts at being written: cleaning up a failed chapter replaces its row by the next
generation's in one transaction, so two requests that both saw it failed clean it up once.
Options exist only once a chapter completed; choices point at an option of the previous
chapter and are never touched by a clean-up.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORDS_FILE = "novel.db"

GENERATING = "generating"
COMPLETED = "completed"
FAILED = "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS novels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    title TEXT NOT NULL,
    premise TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chapters (
    novel_id INTEGER NOT NULL REFERENCES novels(id),
    number INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    status TEXT NOT NULL,
    title TEXT,
    content TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (novel_id, number)
);
CREATE TABLE IF NOT EXISTS options (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    novel_id INTEGER NOT NULL,
    chapter_number INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (novel_id, chapter_number, generation, position)
);
CREATE TABLE IF NOT EXISTS choices (
    user_id INTEGER NOT NULL,
    novel_id INTEGER NOT NULL,
    chapter_number INTEGER NOT NULL,
    option_id INTEGER NOT NULL REFERENCES options(id),
    created_at REAL NOT NULL,
    PRIMARY KEY (user_id, novel_id, chapter_number)
);
"""


class StaleGeneration(Exception):
    """A generation that is no longer the chapter's tried to write it."""


@dataclass(frozen=True, slots=True)
class Novel:
    """A novel's settings: what chapter 1 is written from."""

    id: int
    user_id: int
    title: str
    premise: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "title": self.title,
            "premise": self.premise,
        }


@dataclass(frozen=True, slots=True)
class Option:
    """One of a completed chapter's choices."""

    id: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text}


@dataclass(frozen=True, slots=True)
class Chapter:
    """A chapter row (``options`` filled in once it completed)."""

    novel_id: int
    number: int
    generation: int
    status: str
    title: str | None
    content: str | None
    error: str | None
    options: tuple[Option, ...] = ()


class Records:
    """The rows in one SQLite file; a connection per operation, so any thread may use it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # readers never wait on the writer
            conn.executescript(_SCHEMA)  # one script, committed as a whole
        finally:
            conn.close()

    def __repr__(self) -> str:
        return f"Records({str(self.path)!r})"

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are explicit; BEGIN IMMEDIATE takes the write
        # lock up front so a read-then-write (the clean-up) is never raced half-way.
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")  # a choice names an existing option
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    # --- novels ---------------------------------------------------------------------------

    def create_novel(self, user_id: int, title: str, premise: str) -> Novel:
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO novels (user_id, title, premise, created_at) VALUES (?, ?, ?, ?)",
                (user_id, title, premise, time.time()),
            )
            novel_id = cursor.lastrowid
        assert novel_id is not None
        return Novel(novel_id, user_id, title, premise)

    def novel(self, novel_id: int) -> Novel | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM novels WHERE id = ?", (novel_id,)).fetchone()
        return (
            None if row is None else Novel(row["id"], row["user_id"], row["title"], row["premise"])
        )

    # --- chapters -------------------------------------------------------------------------

    def chapter(self, novel_id: int, number: int) -> Chapter | None:
        with self._tx() as conn:
            return _chapter(conn, novel_id, number)

    def latest_chapter(self, novel_id: int) -> Chapter | None:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT MAX(number) AS n FROM chapters WHERE novel_id = ?", (novel_id,)
            ).fetchone()
            return None if row["n"] is None else _chapter(conn, novel_id, row["n"])

    def generating(self) -> list[Chapter]:
        """Every chapter whose generation has not ended (for the start-up check)."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT novel_id, number FROM chapters WHERE status = ?", (GENERATING,)
            ).fetchall()
            found = [_chapter(conn, r["novel_id"], r["number"]) for r in rows]
        return [c for c in found if c is not None]

    def create_chapter(self, novel_id: int, number: int) -> Chapter:
        """The chapter's row, made ``generating`` (generation 1) unless one exists."""
        with self._tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO chapters (novel_id, number, generation, status, created_at)"
                " VALUES (?, ?, 1, ?, ?)",
                (novel_id, number, GENERATING, time.time()),
            )
            chapter = _chapter(conn, novel_id, number)
        assert chapter is not None
        return chapter

    def replace_failed(self, novel_id: int, number: int, generation: int) -> bool:
        """The seed's clean-up of a failed chapter: its row (and options, of which a failed
        chapter has none) replaced by the next generation's, ``generating``. Choices on
        earlier chapters are kept. ``False`` when another request cleaned it up first."""
        with self._tx() as conn:
            gone = conn.execute(
                "DELETE FROM chapters WHERE novel_id = ? AND number = ? AND generation = ?"
                " AND status = ?",
                (novel_id, number, generation, FAILED),
            ).rowcount
            if not gone:
                return False
            conn.execute(
                "DELETE FROM options WHERE novel_id = ? AND chapter_number = ?",
                (novel_id, number),
            )
            conn.execute(
                "INSERT INTO chapters (novel_id, number, generation, status, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (novel_id, number, generation + 1, GENERATING, time.time()),
            )
        return True

    def mark_failed(self, novel_id: int, number: int, generation: int, error: str) -> None:
        """The generation's run failed: the chapter is ``failed`` (if still that generation's)."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE chapters SET status = ?, error = ?, finished_at = ?"
                " WHERE novel_id = ? AND number = ? AND generation = ? AND status = ?",
                (FAILED, error, time.time(), novel_id, number, generation, GENERATING),
            )

    def complete_chapter(
        self,
        novel_id: int,
        number: int,
        generation: int,
        title: str,
        content: str,
        options: Sequence[str],
    ) -> list[Option]:
        """Write a finished chapter and its options (again: the same ids), ``completed``."""
        with self._tx() as conn:
            chapter = _chapter(conn, novel_id, number)
            if chapter is None or chapter.generation != generation:
                raise StaleGeneration(
                    f"novel {novel_id} chapter {number}: generation {generation} is no longer "
                    "the chapter's (it was cleaned up); its text is not kept"
                )
            conn.executemany(
                "INSERT OR IGNORE INTO options (novel_id, chapter_number, generation, position,"
                " text) VALUES (?, ?, ?, ?, ?)",
                [(novel_id, number, generation, i, text) for i, text in enumerate(options)],
            )
            conn.execute(
                "UPDATE chapters SET status = ?, title = ?, content = ?, error = NULL,"
                " finished_at = ? WHERE novel_id = ? AND number = ?",
                (COMPLETED, title, content, time.time(), novel_id, number),
            )
            return list(_options(conn, novel_id, number, generation))

    # --- choices --------------------------------------------------------------------------

    def choose(self, user_id: int, novel_id: int, number: int, option_id: int) -> bool:
        """Record (or change) the reader's choice on chapter ``number`` while the next
        chapter is not written from it: not begun, or failed (its next generation will
        be written from this choice). ``False``, nothing changed, once it is generating
        or completed."""
        with self._tx() as conn:
            later = conn.execute(
                "SELECT status FROM chapters WHERE novel_id = ? AND number = ?",
                (novel_id, number + 1),
            ).fetchone()
            if later is not None and later["status"] != FAILED:
                return False
            conn.execute(
                "INSERT INTO choices (user_id, novel_id, chapter_number, option_id, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, novel_id, chapter_number)"
                " DO UPDATE SET option_id = excluded.option_id, created_at = excluded.created_at",
                (user_id, novel_id, number, option_id, time.time()),
            )
        return True

    def choice(self, user_id: int, novel_id: int, number: int) -> Option | None:
        """The option the reader chose on chapter ``number``, or ``None``."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT o.id, o.text FROM choices c JOIN options o ON o.id = c.option_id"
                " WHERE c.user_id = ? AND c.novel_id = ? AND c.chapter_number = ?",
                (user_id, novel_id, number),
            ).fetchone()
        return None if row is None else Option(row["id"], row["text"])


def _options(
    conn: sqlite3.Connection, novel_id: int, number: int, generation: int
) -> Iterator[Option]:
    rows = conn.execute(
        "SELECT id, text FROM options WHERE novel_id = ? AND chapter_number = ?"
        " AND generation = ? ORDER BY position",
        (novel_id, number, generation),
    )
    for row in rows:
        yield Option(row["id"], row["text"])


def _chapter(conn: sqlite3.Connection, novel_id: int, number: int) -> Chapter | None:
    row = conn.execute(
        "SELECT * FROM chapters WHERE novel_id = ? AND number = ?", (novel_id, number)
    ).fetchone()
    if row is None:
        return None
    options = (
        tuple(_options(conn, novel_id, number, row["generation"]))
        if row["status"] == COMPLETED
        else ()
    )
    return Chapter(
        row["novel_id"],
        row["number"],
        row["generation"],
        row["status"],
        row["title"],
        row["content"],
        row["error"],
        options,
    )
