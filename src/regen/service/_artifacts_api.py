"""``GET /api/artifacts/{ref}``: an artifact's bytes with its content type, by its sha256.

Only a 64-hex-digit name is looked up, in the store's records first: no path from a
request reaches the filesystem, and nothing lists the artifacts."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from regen.engine import Engine
from regen.service._models import Problem

_SHA256 = re.compile(r"[0-9a-f]{64}")


def artifacts_router(engine: Engine) -> APIRouter:
    """The artifact route on ``engine``."""
    api = APIRouter(tags=["artifacts"])

    @api.get(
        "/api/artifacts/{ref}",
        response_class=FileResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The bytes."},
            404: {"model": Problem, "description": "No such artifact."},
        },
    )
    async def artifact(ref: str) -> FileResponse:
        """An artifact's bytes (``ref``: its sha256, as in an ``ArtifactRef``'s
        ``artifact`` field)."""
        sha = ref.lower()
        if not _SHA256.fullmatch(sha):
            raise HTTPException(404, "no such artifact (a ref is the artifact's sha256, 64 hex)")
        meta = await engine.artifact(sha)
        path = engine.artifacts.path(sha)
        if meta is None or not path.is_file():
            raise HTTPException(404, f"no artifact {sha} (never stored, or cleaned up)")
        return FileResponse(
            path,
            media_type=meta.content_type,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=31536000"},
        )

    return api
