"""Files made the way other programs make them: a new file's permissions follow the umask."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

#: Create, never open an existing file; binary on platforms that tell text apart.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def new_temp_file(folder: Path, prefix: str = ".regen-") -> tuple[int, Path]:
    """A new temporary file in ``folder``, open for writing (its descriptor and path), with
    the permissions other programs give their files: 0o666 less the umask (``mkstemp``
    would make it 0o600). Move it into place once written."""
    while True:
        path = folder / f"{prefix}{secrets.token_hex(8)}.part"
        try:
            return os.open(path, _NEW_FILE, 0o666), path
        except FileExistsError:  # pragma: no cover - 64 random bits taken already
            continue
