"""Seed 004's validation failures: each refused with a clear message before any request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from examples.storyboard import PipelineContext, StoryboardApp, Text2ImageStageProcessor
from examples.storyboard.records import Records
from examples.storyboard.testing import SIM_KEY_ENV, use_simulator

from regen.sim import SimServer, run_simulator


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    monkeypatch.setenv(SIM_KEY_ENV, "sk-sim-test-0003")
    with run_simulator() as server:
        yield server


@pytest.fixture
def app(tmp_path: Path) -> Iterator[StoryboardApp]:
    storyboard_app = StoryboardApp(tmp_path)
    try:
        yield storyboard_app
    finally:
        storyboard_app.close()


def default_provider(records: Records, sim: SimServer) -> None:
    records.add_provider(
        "sim",
        api_url=sim.openai_base_url,
        model_name="jimeng-4.0",
        api_key_env=SIM_KEY_ENV,
        is_default=True,
    )


def missing_project(records: Records, sim: SimServer) -> tuple[str, str]:
    default_provider(records, sim)
    return "no-such-project", "项目不存在：no-such-project"


def storyboard_stage_pending(records: Records, sim: SimServer) -> tuple[str, str]:
    default_provider(records, sim)
    project = records.create_project(storyboard_stage="processing")
    records.add_storyboard(project.id, "一只猫")
    return project.id, "前置阶段 storyboard 未完成（当前状态：processing）：请先完成分镜阶段"


def no_storyboard_stage(records: Records, sim: SimServer) -> tuple[str, str]:
    default_provider(records, sim)
    project = records.create_project(storyboard_stage=None)
    return project.id, "前置阶段 storyboard 未完成（当前状态：不存在）：请先完成分镜阶段"


def no_storyboards(records: Records, sim: SimServer) -> tuple[str, str]:
    default_provider(records, sim)
    project = records.create_project()
    return project.id, f"项目 {project.id} 没有分镜数据：请先生成分镜"


def storyboard_without_prompt(records: Records, sim: SimServer) -> tuple[str, str]:
    default_provider(records, sim)
    project = records.create_project()
    records.add_storyboard(project.id, "一只猫")
    blank = records.add_storyboard(project.id, "  ")
    return project.id, f"分镜缺少文生图提示词 image_prompt：#2 ({blank.id})"


def no_provider(records: Records, sim: SimServer) -> tuple[str, str]:
    project = records.create_project()
    records.add_storyboard(project.id, "一只猫")
    return project.id, (
        "未配置文生图模型提供商：请在项目模型配置 (image_providers) 中指定，或添加 "
        "provider_type='text2image' 的系统默认提供商"
    )


def project_names_a_missing_provider(records: Records, sim: SimServer) -> tuple[str, str]:
    default_provider(records, sim)
    project = records.create_project(image_providers=["gone"])
    records.add_storyboard(project.id, "一只猫")
    return project.id, (
        "项目模型配置 image_providers 中的文生图提供商 'gone' 不存在：请先添加该提供商，"
        "或从项目配置中移除它"
    )


def provider_without_key(records: Records, sim: SimServer) -> tuple[str, str]:
    records.add_provider(
        "gateway",
        api_url=sim.openai_base_url,
        model_name="jimeng-4.0",
        api_key_env="STORYBOARD_TEST_UNSET_KEY",
    )
    project = records.create_project()
    records.add_storyboard(project.id, "一只猫")
    return project.id, (
        "文生图提供商 'gateway' 缺少 API Key：请设置环境变量 STORYBOARD_TEST_UNSET_KEY"
    )


@pytest.mark.parametrize(
    "case",
    [
        missing_project,
        storyboard_stage_pending,
        no_storyboard_stage,
        no_storyboards,
        storyboard_without_prompt,
        no_provider,
        project_names_a_missing_provider,
        provider_without_key,
    ],
    ids=lambda case: case.__name__,
)
async def test_validation_failures_are_clear_and_generate_nothing(
    case: Callable[[Records, SimServer], tuple[str, str]],
    app: StoryboardApp,
    sim: SimServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STORYBOARD_TEST_UNSET_KEY", raising=False)
    project_id, message = case(app.records, sim)
    processor = Text2ImageStageProcessor(app)

    events = [event async for event in processor.process_stream(project_id)]
    assert events == [{"type": "error", "error": message}]

    context = PipelineContext(project_id=project_id)
    result = await processor.process(context)
    assert result.success is False
    assert result.error == message
    assert result.data == {
        "total_storyboards": 0,
        "success_count": 0,
        "failed_count": 0,
        "generated_image_ids": [],
    }
    assert context.results["image_generation"] is result

    assert sim.stats()["requests"] == 0
    assert app.records.images() == []
    for run in await app.engine.list_runs():
        assert run.status == "failed"
        assert (run.error or {})["step"] == "validate"


async def test_unknown_storyboard_ids_are_refused(app: StoryboardApp, sim: SimServer) -> None:
    use_simulator(sim.openai_base_url, app=app)
    project = app.records.create_project()
    app.records.add_storyboard(project.id, "一只猫")
    processor = Text2ImageStageProcessor(app)
    events = [e async for e in processor.process_stream(project.id, storyboard_ids=["x", "y"])]
    assert events == [{"type": "error", "error": f"项目 {project.id} 中没有这些分镜：x, y"}]
    empty = [e async for e in processor.process_stream(project.id, storyboard_ids=[])]
    assert empty == [{"type": "error", "error": f"项目 {project.id} 没有分镜数据：请先生成分镜"}]
    assert sim.stats()["requests"] == 0


async def test_a_refused_run_succeeds_once_the_data_is_fixed(
    app: StoryboardApp, sim: SimServer
) -> None:
    use_simulator(sim.openai_base_url, app=app)
    project = app.records.create_project(storyboard_stage="processing")
    app.records.add_storyboard(project.id, "一只猫")
    processor = Text2ImageStageProcessor(app)
    refused = await processor.process(PipelineContext(project_id=project.id))
    assert refused.success is False
    app.records.set_stage(project.id, "storyboard", "completed")
    (run,) = await app.engine.list_runs()
    events = [e async for e in processor.retry_stream(run.id)]
    assert events[-1]["type"] == "done"
    assert (await processor.result(run.id)).success is True
    assert sim.stats()["prompts"]["一只猫"]["produced"] == 1
