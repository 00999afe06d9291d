"""Seed 004's stage through its Python API, on the simulator: regenerating only failed
storyboards, the result cache, the generation parameters the gateway receives, records
going pending → processing → completed, an all-failed stage, bounded concurrency, provider
choice and a seeded random fault profile."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import examples.storyboard as package
import pytest
from examples.storyboard import (
    CONCURRENCY,
    IMAGE_POLICY,
    PipelineContext,
    ProjectPipeline,
    StoryboardApp,
    Text2ImageStageProcessor,
    flow,
)
from examples.storyboard.testing import (
    DEMO_SCRIPT,
    SIM_KEY_ENV,
    create_demo_project,
    use_simulator,
)

import regen
from regen.sim import SimServer, run_simulator


@pytest.fixture(autouse=True)
def _no_sleeping() -> Iterator[None]:
    with regen.test_mode():
        yield


@pytest.fixture(autouse=True)
def _sim_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIM_KEY_ENV, "sk-sim-test-0002")


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with run_simulator() as server:
        yield server


@pytest.fixture
def app(tmp_path: Path, sim: SimServer) -> Iterator[StoryboardApp]:
    storyboard_app = StoryboardApp(tmp_path / "home")
    use_simulator(sim.openai_base_url, app=storyboard_app)
    try:
        yield storyboard_app
    finally:
        storyboard_app.close()


async def collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


def read_file(path: str | None) -> bytes:
    assert path is not None
    return Path(path).read_bytes()


def image_requests(sim: SimServer) -> int:
    return int(sim.stats()["routes"].get("images", {}).get("requests", 0))


def test_the_package_exports_its_public_names() -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert set(package.__all__) == public


def test_the_stage_is_declared_as_the_seed_asks() -> None:
    assert [(s.name, s.kind) for s in flow.steps] == [
        ("validate", "step"),
        ("generate_images", "map"),
        ("finish", "step"),
    ]
    generate = flow.step_named("generate_images")
    assert generate.concurrency == CONCURRENCY == 3
    assert generate.policy is IMAGE_POLICY
    assert IMAGE_POLICY.timeout == 60.0  # per image (generation and download)
    assert IMAGE_POLICY.attempts == 3
    assert generate.cache is not None


async def test_regenerating_the_failed_ids_generates_only_those(
    app: StoryboardApp, sim: SimServer
) -> None:
    sim.script(*DEMO_SCRIPT)
    project, storyboards = create_demo_project(app)
    processor = Text2ImageStageProcessor(app)
    first = await processor.process(PipelineContext(project_id=project.id))
    assert first.status == "partial"
    assert first.data["failed_count"] == 1
    before = sim.stats()["prompts"]

    failed = processor.failed_storyboard_ids(project.id)
    assert failed == [storyboards[1].id]
    events = await collect(processor.process_stream(project.id, storyboard_ids=failed))
    assert [e["type"] for e in events] == [
        "stage_update",
        "info",
        "progress",
        "image_generated",
        "stage_update",
        "done",
    ]
    assert events[2]["current"] == events[2]["total"] == 1
    done = events[-1]
    assert done["data"]["total_storyboards"] == 1
    assert done["data"]["success_count"] == 1
    assert done["stage"]["status"] == "completed"

    after = sim.stats()["prompts"]
    assert after[storyboards[1].image_prompt]["produced"] == 1
    for sb in (storyboards[0], storyboards[2], storyboards[3]):
        assert after[sb.image_prompt] == before[sb.image_prompt]  # not asked again
    assert image_requests(sim) == 6
    assert processor.failed_storyboard_ids(project.id) == []
    images = app.records.images(storyboard_id=storyboards[1].id)
    assert [i.status for i in images] == ["failed", "completed"]  # both runs' records


async def test_two_streams_at_once_for_one_project_share_one_run_and_both_end_done(
    app: StoryboardApp, sim: SimServer
) -> None:
    project, storyboards = create_demo_project(app)
    sim.script(*DEMO_SCRIPT)
    first, second = Text2ImageStageProcessor(app), Text2ImageStageProcessor(app)
    one, two = await asyncio.gather(
        collect(first.process_stream(project.id)), collect(second.process_stream(project.id))
    )
    (run,) = await app.engine.list_runs()  # the second call attached to the first one's run
    assert image_requests(sim) == 5  # #1, #2 (refused), #3 twice (a 500), #4 = #5 once
    for events in (one, two):
        assert [e["type"] for e in events[-2:]] == ["stage_update", "done"]
        assert events[-1]["stage"]["status"] == "partial"
        assert events[-1]["data"]["total_storyboards"] == len(storyboards)
    assert one == two
    assert len(app.records.run_images(run.id)) == len(storyboards)

    # Another selection while a run goes on is refused with one error event; once the run
    # has ended, the same call starts a new run.
    await app.wait_idle()
    failed = first.failed_storyboard_ids(project.id)
    again = await collect(first.process_stream(project.id, storyboard_ids=failed))
    assert again[-1]["type"] == "done"
    assert len(await app.engine.list_runs()) == 2


async def test_a_call_for_other_storyboards_while_the_stage_runs_is_refused(
    app: StoryboardApp, sim: SimServer
) -> None:
    project, storyboards = create_demo_project(app)
    processor = Text2ImageStageProcessor(app)
    running = processor.process_stream(project.id)
    first = await anext(running)  # the run is started and executing
    assert first["type"] == "stage_update"
    refused = await collect(processor.process_stream(project.id, [storyboards[0].id]))
    assert len(refused) == 1
    assert refused[0]["type"] == "error"
    assert "正在为另一组分镜运行" in refused[0]["error"]
    rest = await collect(running)
    assert rest[-1]["type"] == "done"
    assert len(await app.engine.list_runs()) == 1


async def test_the_app_runs_on_a_simulator_with_no_key_variable_set(
    app: StoryboardApp, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SIM_KEY_ENV)  # the simulator takes any key: none need be set
    project = app.records.create_project("无钥匙")
    app.records.add_storyboard(project.id, "雨夜的霓虹街道")
    result = await Text2ImageStageProcessor(app).process(PipelineContext(project_id=project.id))
    assert result.status == "completed", result.data
    assert image_requests(sim) == 1


async def test_identical_requests_are_served_from_the_result_cache(
    app: StoryboardApp, sim: SimServer
) -> None:
    records = app.records
    project = records.create_project("一")
    first = records.add_storyboard(project.id, "山顶的日出，油画")
    processor = Text2ImageStageProcessor(app)
    result = await processor.process(PipelineContext(project_id=project.id))
    assert result.data["success_count"] == 1
    assert image_requests(sim) == 1

    # Another project, the same prompt and parameters: no new generation.
    other = records.create_project("二")
    same = records.add_storyboard(other.id, "山顶的日出，油画")
    events = await collect(processor.process_stream(other.id))
    assert image_requests(sim) == 1
    assert sim.stats()["prompts"]["山顶的日出，油画"]["produced"] == 1
    assert [e["type"] for e in events] == [
        "stage_update",
        "info",
        "progress",
        "image_generated",
        "stage_update",
        "done",
    ]
    assert events[2]["message"] == "分镜 #1 复用已生成的相同图片（1/1）"
    (reused,) = records.images(storyboard_id=same.id)
    (original,) = records.images(storyboard_id=first.id)
    assert reused.status == "completed"
    assert reused.cached is True
    assert reused.id != original.id
    assert reused.artifact_sha256 == original.artifact_sha256
    assert (reused.width, reused.height, reused.file_size) == (
        original.width,
        original.height,
        original.file_size,
    )
    # Its own record and URL, on the app's file route: never the gateway's expiring URL.
    assert reused.image_url == f"/images/{reused.id}/file"
    assert original.image_url == f"/images/{original.id}/file"
    assert events[3]["image"] == {
        "id": reused.id,
        "url": reused.image_url,
        "width": original.width,
        "height": original.height,
    }
    assert read_file(reused.file_path)[:4] == b"\x89PNG"

    # Other parameters make another image.
    records.add_storyboard(other.id, "山顶的日出，油画", custom_params={"ratio": "4:3"})
    await processor.process(PipelineContext(project_id=other.id))
    assert image_requests(sim) == 2
    assert sim.stats()["prompts"]["山顶的日出，油画"]["produced"] == 2


async def test_the_generation_parameters_reach_the_gateway(
    app: StoryboardApp, sim: SimServer
) -> None:
    records = app.records
    project = records.create_project("参数")
    plain = records.add_storyboard(project.id, "默认参数的镜头", negative_prompt="文字，水印")
    sized = records.add_storyboard(project.id, "指定尺寸的镜头", custom_params={"size": "640x360"})
    square = records.add_storyboard(
        project.id, "方形的镜头", custom_params={"ratio": "1:1", "resolution": "4k"}
    )
    wrong = records.add_storyboard(
        project.id, "分辨率写错的镜头", custom_params={"resolution": "8k"}
    )
    # A rule that matches only requests whose body names the model jimeng-4.0.
    sim.script({"model": "jimeng-4.0", "prompt": plain.image_prompt, "steps": ["server_error"]})

    result = await Text2ImageStageProcessor(app).process(PipelineContext(project_id=project.id))

    assert result.status == "partial"
    images = {i.storyboard_id: i for i in records.images(project_id=project.id)}
    prompts = sim.stats()["prompts"]
    # The model reached the gateway: the rule met the first request.
    assert prompts[plain.image_prompt]["faults"] == {"server_error": 1}
    assert images[plain.id].attempts == 2
    # ratio 16:9 by default (the gateway's own default is square); a 2k preview is 1024 wide
    assert (images[plain.id].width, images[plain.id].height) == (1024, 576)
    # (the simulator neither uses nor records negative_prompt: only the record shows it)
    assert images[plain.id].generation_params["negative_prompt"] == "文字，水印"
    # custom_params: the storyboard's ratio, and any other gateway parameter, are sent
    assert (images[square.id].width, images[square.id].height) == (1024, 1024)
    assert (images[sized.id].width, images[sized.id].height) == (640, 360)
    # a custom resolution the gateway does not know is its 400, not retried
    refused = images[wrong.id]
    assert refused.status == "failed"
    assert refused.attempts == 1
    assert "resolution" in (refused.error or "")
    assert "8k" in (refused.error or "")
    assert prompts[wrong.image_prompt]["routes"] == {"images": 1}
    assert prompts[wrong.image_prompt]["produced"] == 0
    for sb in (plain, sized, square):
        assert images[sb.id].status == "completed"
        assert prompts[sb.image_prompt]["produced"] == 1


async def test_image_records_are_pending_until_their_generation_starts(
    app: StoryboardApp, sim: SimServer
) -> None:
    records = app.records
    project = records.create_project("排队")
    storyboards = [records.add_storyboard(project.id, f"排队的镜头 {n}") for n in range(4)]
    for sb in storyboards:  # each image takes half a second: three at a time, one waits
        sim.script({"prompt": sb.image_prompt, "steps": ["slow:0.5"]})
    run_id = await app.start(project.id)
    assert records.run_images(run_id) == []  # created by the stage itself, when it runs
    task = app.launch(run_id)

    async def when_requested(count: int) -> dict[str, tuple[str, int]]:
        """Each storyboard's record (status, attempts) once the gateway has seen ``count``
        image requests."""
        for _ in range(1000):
            if image_requests(sim) >= count:
                break
            await asyncio.sleep(0.01)
        assert image_requests(sim) == count
        return {i.storyboard_id: (i.status, i.attempts) for i in records.run_images(run_id)}

    first = await when_requested(3)
    started = {sb.id for sb in storyboards if sb.image_prompt in sim.stats()["prompts"]}
    assert len(started) == 3
    (waiting,) = {sb.id for sb in storyboards} - started
    assert first == {
        **dict.fromkeys(started, ("processing", 1)),
        waiting: ("pending", 0),
    }
    second = await when_requested(4)
    assert second[waiting] == ("processing", 1)
    run = await task
    assert run.status == "succeeded"
    assert {i.status for i in records.run_images(run_id)} == {"completed"}


async def test_a_stage_where_every_image_fails_ends_failed_and_its_retry_completes(
    app: StoryboardApp, sim: SimServer
) -> None:
    records = app.records
    project = records.create_project("全部失败")
    storyboards = [records.add_storyboard(project.id, f"被拦截的画面 {n}") for n in (1, 2)]
    sim.script(*({"prompt": sb.image_prompt, "steps": ["content_policy"]} for sb in storyboards))
    processor = Text2ImageStageProcessor(app)
    events = await collect(processor.process_stream(project.id))
    assert [e["type"] for e in events] == [
        "stage_update",
        "info",
        "progress",
        "progress",
        "error",
        "error",
        "stage_update",
        "done",
    ]
    assert {e["storyboard_id"] for e in events if e["type"] == "error"} == {
        sb.id for sb in storyboards
    }
    done = events[-1]
    assert done["message"] == "图片生成失败：2 个分镜全部失败"
    assert done["data"] == {
        "total_storyboards": 2,
        "success_count": 0,
        "failed_count": 2,
        "generated_image_ids": [],
    }
    assert done["stage"]["status"] == "failed"
    (run,) = await app.engine.list_runs()
    assert run.status == "failed"
    result = await processor.result(run.id)
    assert result.success is False
    assert result.status == "failed"
    assert result.data == done["data"]
    assert "content_policy" in (result.error or "")
    stage = records.stage(project.id)
    assert stage is not None
    assert stage.status == "failed"

    # The content filter relents: retrying the run regenerates both.
    retried = await collect(processor.retry_stream(run.id))
    assert [e["type"] for e in retried] == [
        "stage_update",
        "info",
        "progress",
        "progress",
        "image_generated",
        "image_generated",
        "stage_update",
        "done",
    ]
    assert retried[0]["stage"]["status"] == "processing"
    assert retried[-1]["stage"]["status"] == "completed"
    assert (await processor.result(run.id)).data["success_count"] == 2
    assert (await app.engine.get_run(run.id)).status == "succeeded"
    for sb in storyboards:
        assert sim.stats()["prompts"][sb.image_prompt]["routes"] == {"images": 2, "file": 1}


async def test_an_interrupted_stage_resumes_without_redoing_finished_images(
    app: StoryboardApp, sim: SimServer
) -> None:
    records = app.records
    project = records.create_project("中断")
    quick = records.add_storyboard(project.id, "很快就画好的镜头")
    stuck = records.add_storyboard(project.id, "卡住的镜头")
    sim.script({"prompt": "卡住的镜头", "steps": ["hang"]})
    processor = Text2ImageStageProcessor(app)
    run_id = await app.start(project.id)
    task = app.launch(run_id)
    for _ in range(500):  # until the quick image is saved, while the other one hangs
        if any(e.type == "image_generated" for e in await app.engine.read_events(run_id)):
            break
        await asyncio.sleep(0.01)
    task.cancel()  # Ctrl-C, a deploy: the process stops mid-stage
    await asyncio.gather(task, return_exceptions=True)
    run = await app.engine.get_run(run_id)
    assert run.status == "failed"
    assert (run.error or {})["type"] == "Interrupted"
    statuses = {i.storyboard_id: i.status for i in records.run_images(run_id)}
    assert statuses == {quick.id: "completed", stuck.id: "processing"}

    events = await collect(processor.retry_stream(run_id))
    assert [e["type"] for e in events] == [
        "info",
        "progress",
        "image_generated",
        "stage_update",
        "done",
    ]
    assert events[0]["message"] == "继续：重新生成 1 个中断时未完成的分镜"
    assert events[2]["storyboard_id"] == stuck.id
    assert events[-1]["data"]["success_count"] == 2
    prompts = sim.stats()["prompts"]
    assert prompts["很快就画好的镜头"]["routes"] == {"images": 1, "file": 1}
    assert prompts["卡住的镜头"]["routes"]["images"] == 2
    assert prompts["卡住的镜头"]["produced"] == 1


async def test_no_more_than_three_images_are_generated_at_once(tmp_path: Path) -> None:
    with run_simulator(latency=0.15) as slow:
        app = StoryboardApp(tmp_path)
        try:
            use_simulator(slow.openai_base_url, app=app)
            project = app.records.create_project("并发")
            for n in range(7):
                app.records.add_storyboard(project.id, f"第 {n} 个镜头")
            result = await Text2ImageStageProcessor(app).process(
                PipelineContext(project_id=project.id)
            )
            assert result.data["success_count"] == 7
            (run,) = await app.engine.list_runs()
            in_flight, most = 0, 0
            for event in await app.engine.read_events(run.id):
                if event.type == "item.started":
                    in_flight += 1
                    most = max(most, in_flight)
                elif event.type in ("item.succeeded", "item.given_up"):
                    in_flight -= 1
            assert most == 3
        finally:
            app.close()


async def test_the_projects_own_provider_comes_before_the_system_default(
    app: StoryboardApp, sim: SimServer
) -> None:
    with run_simulator() as own:
        app.records.add_provider(
            "project-gateway",
            api_url=own.openai_base_url,
            model_name="jimeng-4.0",
            api_key_env=SIM_KEY_ENV,
        )
        configured = app.records.create_project("自带网关", image_providers=["project-gateway"])
        app.records.add_storyboard(configured.id, "项目自己的网关")
        plain = app.records.create_project("默认网关")
        app.records.add_storyboard(plain.id, "系统默认的网关")
        processor = Text2ImageStageProcessor(app)
        pipeline = ProjectPipeline().add_stage(processor)
        context = await pipeline.execute(configured.id)
        assert context.results["image_generation"].success
        await processor.process(PipelineContext(project_id=plain.id))
        assert list(own.stats()["prompts"]) == ["项目自己的网关"]
        assert list(sim.stats()["prompts"]) == ["系统默认的网关"]
        (mine,) = app.records.images(project_id=configured.id)
        (default,) = app.records.images(project_id=plain.id)
        assert mine.model_provider == "project-gateway"
        assert default.model_provider == "sim"


async def test_a_seeded_random_fault_profile_keeps_the_counts_consistent(tmp_path: Path) -> None:
    profile = {
        "server_error": 0.15,
        "rate_limit": 0.05,
        "bad_gateway_html": 0.05,
        "reset": 0.05,
        "content_policy": 0.08,
        "missing_fields": 0.05,
        "html_200": 0.04,
        "fake_image": 0.05,
        "truncated_image": 0.05,
    }
    with run_simulator(faults=profile, seed=2026) as flaky:
        app = StoryboardApp(tmp_path)
        try:
            use_simulator(flaky.openai_base_url, app=app)
            project = app.records.create_project("随机故障")
            storyboards = [
                app.records.add_storyboard(project.id, f"随机故障下的镜头 {n}") for n in range(12)
            ]
            processor = Text2ImageStageProcessor(app)
            events = await collect(processor.process_stream(project.id))
            (run,) = await app.engine.list_runs()
            result = await processor.result(run.id)
            stats = flaky.stats()
        finally:
            app.close()
    data = result.data
    assert data["total_storyboards"] == 12
    assert data["success_count"] + data["failed_count"] == 12
    expected = (
        "completed"
        if not data["failed_count"]
        else "partial"
        if data["success_count"]
        else "failed"
    )
    assert result.status == expected
    assert result.success is (expected != "failed")
    assert sum(stats["faults"].values()) > 0  # the profile did inject faults
    assert events[-1]["type"] == "done"
    assert events[-1]["data"] == data
    assert events[-1]["stage"]["status"] == expected
    images = {i.storyboard_id: i for i in app.records.run_images(run.id)}
    assert data["generated_image_ids"] == [
        images[sb.id].id for sb in storyboards if images[sb.id].status == "completed"
    ]
    for sb in storyboards:
        image = images[sb.id]
        outcomes = [e["type"] for e in events if e.get("storyboard_id") == sb.id]
        prompt = stats["prompts"][sb.image_prompt]
        assert prompt["routes"]["images"] <= IMAGE_POLICY.attempts
        if image.status == "completed":
            assert outcomes == ["image_generated"]
            assert prompt["produced"] >= 1
            assert len(read_file(image.file_path)) == image.file_size
        else:
            assert image.status == "failed"
            assert outcomes == ["error"]
            assert image.error
