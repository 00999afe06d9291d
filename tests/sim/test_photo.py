"""The generic photo/video submit-and-poll API."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from regen.sim import SimServer

AUTH = {"Authorization": "Bearer sk-photo"}


@pytest.fixture
def http(sim: SimServer) -> Any:
    with httpx.Client(base_url=sim.photo_base_url, headers=AUTH, timeout=5) as client:
        yield client


#: A bound on waits for a task's end that only a broken simulator reaches: tasks take
#: 0.3 s (videos 0.6 s) of the simulator's time, however slowly a loaded machine polls.
WAIT_LIMIT = 30.0


def wait(http: httpx.Client, path: str) -> dict[str, Any]:
    """Poll ``path`` until its task is neither queued nor processing; return that body."""
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        body: dict[str, Any] = http.get(path).json()
        if body.get("status") not in ("queued", "processing"):
            return body
        assert time.monotonic() < deadline, f"task still {body.get('status')} at {path}"
        time.sleep(0.02)


def test_art_photo_task_succeeds_with_an_image(http: httpx.Client, sim: SimServer) -> None:
    submitted = http.post("/art-photos", json={"prompt": "a portrait in oil", "size": "640x480"})
    assert submitted.status_code == 200
    task = submitted.json()
    assert task["status"] == "queued"
    assert task["task_id"].startswith("art-")
    first = http.get(f"/tasks/{task['task_id']}").json()
    assert first["status"] in ("queued", "processing")
    assert 0 <= first["progress"] < 100
    done = wait(http, f"/tasks/{task['task_id']}")
    assert done["status"] == "succeeded"
    assert done["progress"] == 100
    assert done["error"] is None
    image = Image.open(io.BytesIO(httpx.get(done["result"]["image_url"]).content))
    assert image.size == (640, 480)
    assert sim.stats()["prompts"]["a portrait in oil"]["produced"] == 1


def test_video_task_takes_longer_and_gives_an_animation(http: httpx.Client) -> None:
    task = http.post("/videos", json={"prompt": "waves", "duration": 3}).json()
    assert task["task_id"].startswith("vid-")
    done = wait(http, f"/videos/{task['task_id']}")
    assert done["status"] == "succeeded"
    assert done["result"]["duration"] == 3
    video = httpx.get(done["result"]["video_url"])
    assert video.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(video.content)).n_frames > 1
    assert http.get(f"/tasks/{task['task_id']}").status_code == 404  # not a photo task


def test_task_failed_reports_the_error(http: httpx.Client) -> None:
    task = http.post(
        "/art-photos", json={"prompt": "x"}, headers={"X-Regen-Fault": "task_failed:gpu_lost"}
    ).json()
    done = wait(http, f"/tasks/{task['task_id']}")
    assert done["status"] == "failed"
    assert done["error"]["code"] == "gpu_lost"
    assert done["result"] is None


def test_task_stuck_stays_processing(http: httpx.Client) -> None:
    task = http.post(
        "/videos", json={"prompt": "x"}, headers={"X-Regen-Fault": "task_stuck"}
    ).json()
    control = http.post("/videos", json={"prompt": "x"}).json()  # submitted after it
    assert wait(http, f"/videos/{control['task_id']}")["status"] == "succeeded"
    assert http.get(f"/videos/{task['task_id']}").json()["status"] == "processing"


def test_task_unknown_is_404(http: httpx.Client) -> None:
    task = http.post(
        "/art-photos", json={"prompt": "x"}, headers={"X-Regen-Fault": "task_unknown"}
    ).json()
    response = http.get(f"/tasks/{task['task_id']}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"


def test_poll_rate_limit(http: httpx.Client) -> None:
    task = http.post(
        "/art-photos", json={"prompt": "x"}, headers={"X-Regen-Fault": "poll_rate_limit:2"}
    ).json()
    statuses = [http.get(f"/tasks/{task['task_id']}").status_code for _ in range(3)]
    assert statuses == [429, 429, 200]


@pytest.mark.parametrize(
    ("fault", "status"), [("rate_limit", 429), ("server_error", 500), ("quota", 402)]
)
def test_submit_faults_use_the_photo_error_shape(
    http: httpx.Client, fault: str, status: int
) -> None:
    response = http.post("/art-photos", json={"prompt": "x"}, headers={"X-Regen-Fault": fault})
    assert response.status_code == status
    assert set(response.json()["error"]) == {"code", "message"}


def test_missing_prompt_is_400(http: httpx.Client) -> None:
    response = http.post("/art-photos", json={})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_missing_key_is_401(sim: SimServer) -> None:
    response = httpx.post(f"{sim.photo_base_url}/art-photos", json={"prompt": "x"})
    assert response.status_code == 401


def test_content_policy_on_video(http: httpx.Client) -> None:
    response = http.post(
        "/videos", json={"prompt": "x"}, headers={"X-Regen-Fault": "content_policy"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation"
