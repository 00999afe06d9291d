"""Seed 004's own test example, as written; only its imports point at this example.

The fixture stands in for the seed's test settings: a data directory, a simulator as the
system default text-to-image provider (its key in the environment).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# -- the seed's imports, adapted to where things live here ---------------------------------
from asgiref.sync import sync_to_async
from examples.storyboard import (
    GeneratedImage,
    PipelineContext,
    Text2ImageStageProcessor,
    close_default_apps,
)
from examples.storyboard.testing import (
    SIM_KEY_ENV,
    create_test_project,
    create_test_storyboard,
    use_simulator,
)

from regen.sim import SimServer, run_simulator


@pytest.fixture(autouse=True)
def seed_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    monkeypatch.setenv("STORYBOARD_HOME", str(tmp_path))
    monkeypatch.setenv(SIM_KEY_ENV, "sk-sim-seed-test")
    with run_simulator() as sim:
        use_simulator(sim.openai_base_url)
        try:
            yield sim
        finally:
            close_default_apps()


# -- the seed's test, unchanged (kept out of the formatter to stay verbatim) ----------------
# fmt: off
@pytest.mark.asyncio
async def test_text2image_processor():
    processor = Text2ImageStageProcessor()

    # 创建测试项目和分镜
    project = await create_test_project()
    storyboard = await create_test_storyboard(project)

    # 执行处理
    context = PipelineContext(project_id=str(project.id))
    result = await processor.process(context)

    assert result.success
    assert result.data['success_count'] > 0

    # 验证图片已保存
    images = await sync_to_async(
        lambda: list(GeneratedImage.objects.filter(storyboard=storyboard))
    )()
    assert len(images) > 0
# fmt: on


# -- what the seed's test leaves implicit ---------------------------------------------------
async def test_the_seed_example_saved_a_complete_record(seed_settings: SimServer) -> None:
    processor = Text2ImageStageProcessor()
    project = await create_test_project()
    storyboard = await create_test_storyboard(project)
    result = await processor.process(PipelineContext(project_id=str(project.id)))
    assert result.data == {
        "total_storyboards": 1,
        "success_count": 1,
        "failed_count": 0,
        "generated_image_ids": result.data["generated_image_ids"],
    }
    (image,) = await sync_to_async(GeneratedImage.objects.filter)(storyboard=storyboard)
    assert result.data["generated_image_ids"] == [image.id]
    assert image.status == "completed"
    assert image.generation_params == {
        "model": "jimeng-4.0",
        "prompt": storyboard.image_prompt,
        "ratio": "16:9",
        "resolution": "2k",
    }
    assert image.model_provider == "sim"
    assert (image.width, image.height) == (1024, 576)
    assert image.file_size
    assert seed_settings.stats()["prompts"][storyboard.image_prompt]["produced"] == 1
