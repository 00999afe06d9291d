"""Binary outputs on disk, content-addressed: ``<home>/artifacts/ab/cdef…`` (sha256)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from regen.foundation import new_temp_file
from regen.store._errors import ReadOnlyStore, StoreError


class Blobs:
    """Files named by the sha256 of their bytes, under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """Where the bytes of ``sha256`` live (whether or not they are there)."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise StoreError(f"{sha256!r} is not a sha256 digest (64 lowercase hex digits)")
        return self.root / sha256[:2] / sha256[2:]

    def stage(self, data: bytes) -> tuple[str, Path]:
        """Write ``data`` to a temporary file beside its final place; ``(sha256, temp)``."""
        sha = hashlib.sha256(data).hexdigest()
        folder = self.path(sha).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, name = new_temp_file(folder, ".tmp-")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except PermissionError as exc:
            raise ReadOnlyStore(f"cannot write artifacts under {self.root}: {exc}") from exc
        return sha, name

    def place(self, sha256: str, staged: Path) -> None:
        """Move a staged file into place (atomically; a file already there is kept)."""
        final = self.path(sha256)
        if final.exists():
            staged.unlink(missing_ok=True)
        else:
            os.replace(staged, final)

    def read(self, sha256: str) -> bytes:
        """The bytes of an artifact."""
        return self.path(sha256).read_bytes()

    def remove(self, sha256: str) -> None:
        """Delete an artifact's file, if present."""
        self.path(sha256).unlink(missing_ok=True)
