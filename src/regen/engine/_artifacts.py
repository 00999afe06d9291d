"""Artifacts: binary outputs kept content-addressed under ``<home>/artifacts``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from regen.engine import _time
from regen.engine._blocking import wait_for
from regen.engine._json import ArtifactRef
from regen.foundation import media_info
from regen.store import Artifact, Blobs, Store, StoreError


class ArtifactStore:
    """Writes artifact files and records their metadata in the store."""

    def __init__(self, store: Store, root: Path) -> None:
        self._store = store
        self.blobs = Blobs(root)

    def put(self, data: bytes, content_type: str | None = None) -> ArtifactRef:
        """Store ``data``; the same bytes twice are stored once (from synchronous code)."""
        return wait_for(self.aput(data, content_type))

    async def aput(self, data: bytes, content_type: str | None = None) -> ArtifactRef:
        """Store ``data``; the same bytes twice are stored once."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"artifacts hold bytes, not {type(data).__name__}")
        raw = bytes(data)
        sniffed, width, height = media_info(raw)
        sha, staged = self.blobs.stage(raw)
        meta = Artifact(sha, len(raw), content_type or sniffed, width, height)
        try:
            # The bytes are moved into place inside the store's transaction, so a clean-up
            # running meanwhile never deletes a file just recorded.
            await self._store.put_artifact(meta, lambda: self.blobs.place(sha, staged), _time.now())
        finally:
            staged.unlink(missing_ok=True)
        return ArtifactRef(sha, len(raw), meta.content_type, width, height)

    async def get(self, sha256: str) -> Artifact | None:
        """An artifact's metadata."""
        return await self._store.get_artifact(sha256)

    def path(self, ref: ArtifactRef | Mapping[str, Any] | str) -> Path:
        """Where an artifact's bytes are."""
        return self.blobs.path(_sha(ref))

    def read(self, ref: ArtifactRef | Mapping[str, Any] | str) -> bytes:
        """An artifact's bytes."""
        sha = _sha(ref)
        try:
            return self.blobs.read(sha)
        except FileNotFoundError:
            raise StoreError(f"artifact {sha} is not stored (was it cleaned up?)") from None


def _sha(ref: ArtifactRef | Mapping[str, Any] | str) -> str:
    if isinstance(ref, ArtifactRef):
        return ref.sha256
    if isinstance(ref, str):
        return ref
    return str(ref["artifact"])
