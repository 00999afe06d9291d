"""Named SQL blocks read from the package's ``.sql`` files (SQL is data, not strings in code)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a file of ``-- name: NAME`` blocks into ``{NAME: statement}``."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


def read(dialect: str, name: str) -> str:
    """The text of ``sql/<dialect>/<name>``."""
    return resources.files("regen.store").joinpath("sql", dialect, name).read_text("utf-8")


@cache
def queries(dialect: str) -> dict[str, str]:
    """The named queries of a dialect (``"sqlite"``)."""
    return parse(read(dialect, "queries.sql"))


def migrations(dialect: str) -> list[tuple[int, str]]:
    """``(version, script)`` of every migration of a dialect, in order."""
    folder = resources.files("regen.store").joinpath("sql", dialect, "migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_\w+\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text("utf-8")))
    found.sort()
    return found
