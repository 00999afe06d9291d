"""Seed 004 end to end on the wire: the stage streamed as SSE by a real FastAPI app and a
real Django (ASGI) app, each served by uvicorn on loopback, generating images on the
simulator with faults scripted per prompt."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.storyboard import (
    EVENT_TYPES,
    StoryboardApp,
    Text2ImageStageProcessor,
    close_default_apps,
    default_app,
)
from examples.storyboard.fastapi_app import create_app
from examples.storyboard.models import Storyboard
from examples.storyboard.testing import DEMO_SCRIPT, SIM_KEY_ENV, create_demo_project, use_simulator
from tests.service.server import Served

import regen
from regen.sim import SimServer, run_simulator

FIELDS = {
    "stage_update": {"stage"},
    "info": {"message"},
    "progress": {"current", "total", "message", "storyboard"},
    "image_generated": {"storyboard_id", "image"},
    "warning": {"message"},
    "error": {"error", "storyboard_id"},
    "done": {"message", "data", "stage"},
}


@pytest.fixture(autouse=True)
def _no_sleeping() -> Iterator[None]:
    with regen.test_mode():
        yield


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    monkeypatch.setenv(SIM_KEY_ENV, "sk-sim-test-0001")
    with run_simulator(rules=list(DEMO_SCRIPT)) as server:
        yield server


def read_sse(client: httpx.Client, url: str, method: str = "GET") -> tuple[httpx.Response, str]:
    with client.stream(method, url, timeout=30) as response:
        body = "".join(response.iter_text())
    return response, body


def parse_sse(body: str) -> list[dict[str, Any]]:
    """Seed 004's wire format: ``data: {json}\\n\\n`` per event, after its ``id: RUN:SEQ``
    line (what a reconnecting client resumes after)."""
    assert body.endswith("\n\n"), body[-200:]
    events = []
    for framed in body.split("\n\n")[:-1]:
        block = framed.split("\n", 1)[1] if framed.startswith("id: ") else framed
        assert block.startswith("data: "), block
        assert "\n" not in block, block
        events.append(json.loads(block.removeprefix("data: ")))
    return events


def check_sse_headers(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"


def check_demo_run(
    app: StoryboardApp, sim: SimServer, storyboards: list[Storyboard], body: str
) -> list[dict[str, Any]]:
    """Every promise of the demo scenario: events, stage result, records, simulator stats."""
    sb1, sb2, sb3, sb4, sb5 = storyboards
    assert "灯塔" in body
    assert "\\u" not in body
    events = parse_sse(body)
    for event in events:
        assert event["type"] in EVENT_TYPES
        fields = set(event) - {"type"}
        if event["type"] == "error":
            assert fields in ({"error"}, {"error", "storyboard_id"}), event
        else:
            assert fields == FIELDS[event["type"]], event

    (run,) = app.engine.sync.list_runs()
    result = asyncio.run(app.result(run.id))
    images = {image.storyboard_id: image for image in app.records.run_images(run.id)}
    stage = app.records.stage(storyboards[0].project_id)
    assert stage is not None

    # The stage result: partial, counted per storyboard.
    assert result.success is True
    assert result.status == "partial"
    ids = [images[sb.id].id for sb in (sb1, sb3, sb4, sb5)]
    assert result.data == {
        "total_storyboards": 5,
        "success_count": 4,
        "failed_count": 1,
        "generated_image_ids": ids,
    }
    assert run.status == "partial"

    # The event sequence.
    started = {
        "id": stage.id,
        "status": "processing",
        "stage_type": "image_generation",
        "started_at": stage.started_at,
    }
    assert events[0] == {"type": "stage_update", "stage": started}
    start = "开始为 5 个分镜生成图片（提供商 sim，模型 jimeng-4.0，并发 3）"
    assert events[1] == {"type": "info", "message": start}
    assert events[2] == {
        "type": "info",
        "message": "分镜 #4、#5 的提示词和参数相同：只生成一次，共用这张图片",
    }
    progress = [e for e in events if e["type"] == "progress"]
    assert [(e["current"], e["total"], e["storyboard"]["id"]) for e in progress] == [
        (n, 5, sb.id) for n, sb in enumerate(storyboards, start=1)
    ]
    assert progress[0]["message"] == "正在生成第 1/5 张图片（分镜 #1）"
    assert progress[3]["storyboard"] == {
        "id": sb4.id,
        "sequence_number": 4,
        "image_prompt": "海边的白色灯塔，黄昏",
    }
    generated = [e for e in events if e["type"] == "image_generated"]
    assert sorted(e["storyboard_id"] for e in generated) == sorted(
        sb.id for sb in (sb1, sb3, sb4, sb5)
    )
    for event in generated:
        image = images[event["storyboard_id"]]
        assert event["image"] == {
            "id": image.id,
            "url": image.image_url,
            "width": image.width,
            "height": image.height,
        }
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1
    assert errors[0]["storyboard_id"] == sb2.id
    assert errors[0]["error"].startswith("分镜 #2 图片生成失败（content_policy，共尝试 1 次）")
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert len(warnings) == 2
    assert warnings[0].startswith("分镜 #3 第 1 次生成失败（server_error")
    assert warnings[0].endswith("正在第 2 次尝试")
    for sb in storyboards:  # each storyboard: its progress, then its outcome
        mine = [
            e["type"]
            for e in events
            if sb.id in (e.get("storyboard_id"), e.get("storyboard", {}).get("id"))
        ]
        assert mine == ["progress", "error" if sb is sb2 else "image_generated"]
    ended = {**started, "status": "partial"}
    assert events[-3:] == [
        {"type": "warning", "message": "1 个分镜的图片生成失败：可以只重新生成失败的分镜"},
        {"type": "stage_update", "stage": ended},
        {
            "type": "done",
            "message": "图片生成部分完成：成功 4 个，失败 1 个",
            "data": result.data,
            "stage": ended,
        },
    ]
    assert stage.status == "partial"

    # The image records.
    assert len(images) == 5
    for sb in storyboards:
        image = images[sb.id]
        assert uuid.UUID(image.id)
        assert image.run_id == run.id
        assert image.model_provider == "sim"
        assert image.generation_params["model"] == "jimeng-4.0"
        assert image.generation_params["prompt"] == sb.image_prompt
    assert images[sb1.id].generation_params == {
        "model": "jimeng-4.0",
        "prompt": sb1.image_prompt,
        "ratio": "1:1",
        "resolution": "1k",
    }
    assert images[sb3.id].generation_params == {
        "model": "jimeng-4.0",
        "prompt": sb3.image_prompt,
        "ratio": "16:9",
        "resolution": "2k",
        "negative_prompt": "文字，水印",
    }
    assert (images[sb1.id].width, images[sb1.id].height) == (1024, 1024)
    for sb in (sb3, sb4, sb5):  # 16:9 at 2k: the simulator draws a 1024-wide preview
        assert (images[sb.id].width, images[sb.id].height) == (1024, 576)
    failed = images[sb2.id]
    assert failed.status == "failed"
    assert failed.image_url is None
    assert failed.width is None
    assert failed.file_size is None
    assert "content_policy_violation" in (failed.error or "")
    assert failed.attempts == 1
    for sb in (sb1, sb3, sb4, sb5):
        image = images[sb.id]
        assert image.status == "completed"
        assert image.error is None
        assert image.image_url == f"/images/{image.id}/file"  # the app's, not the gateway's
        assert image.file_path is not None
        data = Path(image.file_path).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert len(data) == image.file_size
    assert images[sb3.id].attempts == 2
    assert images[sb4.id].artifact_sha256 == images[sb5.id].artifact_sha256

    # What the simulator generated and billed.
    stats = sim.stats()
    prompts = stats["prompts"]
    assert stats["routes"]["images"]["requests"] == 5
    assert prompts[sb1.image_prompt]["routes"] == {"images": 1, "file": 1}
    assert prompts[sb1.image_prompt]["produced"] == 1
    assert prompts[sb2.image_prompt]["routes"] == {"images": 1}
    assert prompts[sb2.image_prompt]["produced"] == 0
    assert prompts[sb2.image_prompt]["faults"] == {"content_policy": 1}
    assert prompts[sb3.image_prompt]["routes"] == {"images": 2, "file": 1}
    assert prompts[sb3.image_prompt]["produced"] == 1
    assert prompts[sb3.image_prompt]["faults"] == {"server_error": 1}
    assert prompts[sb4.image_prompt]["routes"] == {"images": 1, "file": 1}  # #4 and #5
    assert prompts[sb4.image_prompt]["produced"] == 1
    return events


def check_image_urls(client: httpx.Client, app: StoryboardApp, project_id: str) -> None:
    """Every completed record's ``image_url`` is served by the app itself: its file's bytes."""
    completed = [i for i in app.records.images(project_id=project_id) if i.status == "completed"]
    assert completed
    for image in completed:
        assert image.image_url is not None
        assert image.file_path is not None
        served = client.get(image.image_url)
        assert served.status_code == 200, image.image_url
        assert served.headers["content-type"] == "image/png"
        assert served.content == Path(image.file_path).read_bytes()
    assert client.get("/images/no-such-image/file").status_code == 404


def test_fastapi_streams_the_stage_and_retries_only_the_failed_storyboard(
    sim: SimServer, tmp_path: Path
) -> None:
    app = StoryboardApp(tmp_path)
    try:
        use_simulator(sim.openai_base_url, app=app)
        project, storyboards = create_demo_project(app)
        api = create_app(Text2ImageStageProcessor(app))
        with Served(api, lifespan="off") as served, httpx.Client(base_url=served.url) as client:
            response, body = read_sse(client, f"/projects/{project.id}/images/stream")
            check_sse_headers(response)
            assert app.join()
            events = check_demo_run(app, sim, storyboards, body)
            check_image_urls(client, app, project.id)
            (run,) = app.engine.sync.list_runs()

            # Re-attaching replays the same events from the durable log.
            response, again = read_sse(client, f"/runs/{run.id}/events")
            check_sse_headers(response)
            assert parse_sse(again) == events

            # Retrying the partial run generates only storyboard #2.
            response, body = read_sse(client, f"/runs/{run.id}/retry", method="POST")
            check_sse_headers(response)
            assert app.join()
            retried = parse_sse(body)
            assert [e["type"] for e in retried] == [
                "stage_update",
                "info",
                "progress",
                "image_generated",
                "stage_update",
                "done",
            ]
            assert retried[2]["storyboard"]["id"] == storyboards[1].id
            assert retried[3]["storyboard_id"] == storyboards[1].id
            assert retried[-1]["data"]["success_count"] == 5
            assert retried[-1]["stage"]["status"] == "completed"

            result = client.get(f"/runs/{run.id}").json()
            assert result["success"] is True
            assert result["data"]["failed_count"] == 0
            listed = client.get(f"/projects/{project.id}/images").json()
            assert [i["status"] for i in listed] == ["completed"] * 5
            png = client.get(f"/images/{listed[0]['id']}/file")
            assert png.headers["content-type"] == "image/png"
            assert png.content.startswith(b"\x89PNG")
            refused = client.post(f"/runs/{run.id}/retry")
            assert refused.status_code == 409
            assert client.get("/runs/nope/events").status_code == 404

        stats = sim.stats()
        assert stats["routes"]["images"]["requests"] == 6  # 5 before, 1 for #2
        second = stats["prompts"][storyboards[1].image_prompt]
        assert second["produced"] == 1
        assert second["routes"] == {"images": 2, "file": 1}
        for sb in (storyboards[0], storyboards[2], storyboards[3]):
            assert stats["prompts"][sb.image_prompt]["produced"] == 1
    finally:
        app.close()


def _django_asgi() -> Any:
    import django  # noqa: PLC0415 - only this test needs Django
    from django.conf import settings  # noqa: PLC0415
    from django.core.asgi import get_asgi_application  # noqa: PLC0415

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="storyboard-example-test",
            ROOT_URLCONF="examples.storyboard.django_views",
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
            DATABASES={},
            USE_TZ=True,
        )
        django.setup()
    return get_asgi_application()


def test_django_async_view_streams_the_stage_in_the_seeds_wire_format(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seed's view builds ``Text2ImageStageProcessor()`` itself: the default app.
    monkeypatch.setenv("STORYBOARD_HOME", str(tmp_path))
    try:
        app = default_app()
        use_simulator(sim.openai_base_url)
        project, storyboards = create_demo_project()
        with (
            Served(_django_asgi(), lifespan="off") as served,
            httpx.Client(base_url=served.url) as client,
        ):
            response, body = read_sse(client, f"/projects/{project.id}/images/stream")
            check_sse_headers(response)
            assert app.join()
            events = check_demo_run(app, sim, storyboards, body)
            check_image_urls(client, app, project.id)
            (run,) = app.engine.sync.list_runs()
            response, again = read_sse(client, f"/runs/{run.id}/events?after=0")
            check_sse_headers(response)
            assert parse_sse(again) == events

            # Regenerate only the failed storyboard (the seed's explicit ids): a new run.
            failed = Text2ImageStageProcessor().failed_storyboard_ids(project.id)
            assert failed == [storyboards[1].id]
            response, body = read_sse(
                client, f"/projects/{project.id}/images/stream?storyboard_ids={failed[0]}"
            )
            assert app.join()
            regenerated = parse_sse(body)
            assert regenerated[-1]["type"] == "done"
            assert regenerated[-1]["data"]["total_storyboards"] == 1
            assert regenerated[-1]["data"]["success_count"] == 1
            assert regenerated[-1]["stage"]["status"] == "completed"
            assert Text2ImageStageProcessor().failed_storyboard_ids(project.id) == []

            # A validation failure is one error event, and nothing is generated.
            response, body = read_sse(client, "/projects/missing/images/stream")
            check_sse_headers(response)
            assert app.join()
            assert parse_sse(body) == [{"type": "error", "error": "项目不存在：missing"}]
        assert sim.stats()["routes"]["images"]["requests"] == 6
    finally:
        close_default_apps()
