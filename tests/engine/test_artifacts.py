"""Artifacts are files like other programs make: readable as the umask allows."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest

from regen.engine import ArtifactRef, Engine, Flow, RunStatus


@pytest.fixture
def umask() -> Iterator[None]:
    """Each test sets the umask it needs; the process's is restored after."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


@pytest.mark.parametrize(
    ("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)], ids=lambda v: f"{v:04o}"
)
async def test_an_artifact_file_has_the_permissions_the_umask_gives(
    engine: Engine, umask: None, mask: int, mode: int
) -> None:
    os.umask(mask)
    flow = Flow("drawing")

    @flow.step()
    async def draw(ctx: Any) -> ArtifactRef:
        return ctx.artifacts.put(b"GIF89a" + bytes(20), "image/gif")

    run = await engine.run(flow)
    assert run.status is RunStatus.SUCCEEDED
    ref = (await engine.detail(run.id)).steps[0].output
    path = engine.artifacts.path(ref)
    assert path.read_bytes() == b"GIF89a" + bytes(20)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
