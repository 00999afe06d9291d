"""Where a bug is: the frames of a traceback that are the user's own code, kept with a
failure as JSON and rendered back the way Python prints a traceback."""

from __future__ import annotations

import site
import sysconfig
import traceback
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from regen.foundation import mask_secrets

#: The innermost frames kept (a runaway recursion would otherwise keep a thousand).
MAX_FRAMES = 20


def user_frames(exc: BaseException) -> list[dict[str, Any]]:
    """The frames of ``exc``'s traceback in the user's code, outermost first: ``file``,
    ``line``, ``function`` and the source line as ``code`` (secrets masked). Frames inside
    regen, the standard library (asyncio, threads) and installed packages are left out."""
    frames = [
        {
            "file": frame.filename,
            "line": frame.lineno,
            "function": frame.name,
            "code": mask_secrets(frame.line or ""),
        }
        for frame in traceback.extract_tb(exc.__traceback__)
        if _is_users(frame.filename)
    ]
    return frames[-MAX_FRAMES:]


def exception_line(exc: BaseException) -> str:
    """The last line Python prints for ``exc`` (``ZeroDivisionError: division by zero``),
    secrets masked."""
    return mask_secrets(traceback.format_exception_only(exc)[-1].rstrip("\n"))


def format_error(error: Mapping[str, Any]) -> str:
    """A failure's error record (``run.error``, the ``error`` of ``step.failed``) as Python
    would print it: the user's frames, if any were kept, then ``Type: message``::

        Traceback (most recent call last):
          File "flows.py", line 3, in render
            return 1 / 0
        ZeroDivisionError: division by zero
    """
    lines: list[str] = []
    frames = error.get("frames") or []
    if frames:
        lines.append("Traceback (most recent call last):")
        for frame in frames:
            lines.append(
                f'  File "{frame.get("file")}", line {frame.get("line")}, '
                f"in {frame.get('function')}"
            )
            if frame.get("code"):
                lines.append(f"    {frame['code']}")
    last = error.get("exception")
    if not last:
        kind = error.get("type") or "Error"
        message = error.get("message")
        last = f"{kind}: {message}" if message else str(kind)
    lines.append(str(last))
    return "\n".join(lines)


def _is_users(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    path = Path(filename)
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return False
    return not any(path.is_relative_to(root) for root in _not_users())


@cache
def _not_users() -> tuple[Path, ...]:
    """Folders whose code is not the user's: regen's own, the standard library's, and
    installed packages'."""
    here = Path(__file__)
    roots = {here.parents[1], here.resolve().parents[1]}  # regen's package folder
    paths = sysconfig.get_paths()
    roots.update(Path(paths[name]) for name in ("stdlib", "platstdlib", "purelib", "platlib"))
    roots.update(Path(p) for p in site.getsitepackages())
    return tuple(roots)
