"""The REST API over real HTTP on loopback: every route, and its errors."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from tests.service.conftest import FLOWS
from tests.service.flows import pipeline, png
from tests.service.server import Served
from tests.service.waiting import wait_final

from regen.engine import Engine
from regen.service import create_app


def start(client: httpx.Client, flow: str, params: dict | None = None, **more) -> dict:
    response = client.post("/api/runs", json={"flow": flow, "params": params or {}, **more})
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_a_started_run_is_executed_by_the_hosted_worker(client: httpx.Client) -> None:
    answer = start(client, "pipeline")
    assert answer["created"] is True
    assert answer["run"]["status"] == "queued"
    detail = wait_final(client, answer["run"]["id"])
    assert detail["status"] == "succeeded"
    assert [s["name"] for s in detail["steps"]] == ["fetch", "analyze", "publish", "render"]
    assert detail["checkpoint"]["step_outputs"]["analyze"]["output"] == {"results": ["A", "B"]}


def test_a_business_key_gives_one_run(client: httpx.Client) -> None:
    first = client.post("/api/runs", json={"flow": "pipeline", "key": "day-1"})
    again = client.post("/api/runs", json={"flow": "pipeline", "key": "day-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["created"] is False
    assert again.json()["run"]["id"] == first.json()["run"]["id"]


def test_starting_refuses_what_does_not_fit(client: httpx.Client) -> None:
    unknown = client.post("/api/runs", json={"flow": "nope"})
    assert unknown.status_code == 404
    assert "served flows: pipeline, story" in unknown.json()["detail"]
    # An import string from a request is never imported: only served flows start.
    imported = client.post("/api/runs", json={"flow": "os:system"})
    assert imported.status_code == 404
    bad_params = client.post("/api/runs", json={"flow": "story", "params": {"words": "many"}})
    assert bad_params.status_code == 422
    assert "words" in bad_params.json()["detail"]
    extra = client.post("/api/runs", json={"flow": "story", "colour": "red"})
    assert extra.status_code == 422
    assert extra.json()["detail"].startswith("body.colour: ")  # one message, as every error
    not_json = client.post("/api/runs", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    assert not_json.json()["detail"].startswith("body: not valid JSON")
    no_flow = client.post("/api/runs", json={"params": {"api_key": "sk-live-abcdef123456"}})
    assert no_flow.json() == {"detail": "body.flow: Field required"}  # the input not echoed


def test_text_no_store_can_hold_is_refused_or_not_found_alike(client: httpx.Client) -> None:
    # The same answers on SQLite and PostgreSQL (whose text cannot hold a NUL character,
    # and whose numbers stop at 2**63 - 1).
    nul_key = client.post("/api/runs", json={"flow": "story", "key": "day\x001"})
    assert nul_key.status_code == 422
    assert "key" in nul_key.text
    for method, path in [
        ("GET", "/api/runs/r%00"),
        ("POST", "/api/runs/r%00/cancel"),
        ("DELETE", "/api/runs/r%00"),
        ("GET", "/api/runs/r%00/checkpoint"),
    ]:
        assert client.request(method, path).status_code == 404, (method, path)
    listed = client.get("/api/runs", params={"flow": "story\x00"})
    assert (listed.status_code, listed.json()["runs"]) == (200, [])
    run_id = start(client, "story")["run"]["id"]
    beyond = str(2**63)
    assert client.get(f"/api/runs/{run_id}/events", params={"after": beyond}).status_code == 422
    assert client.get("/api/events", params={"after": beyond}).status_code == 422
    resumed = client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": beyond})
    assert resumed.status_code == 400
    assert "not an id this stream sent" in resumed.json()["detail"]


def test_runs_are_listed_newest_first_filtered_and_paged(client: httpx.Client) -> None:
    ids = [start(client, "pipeline")["run"]["id"] for _ in range(3)]
    story = start(client, "story")["run"]["id"]
    for run_id in [*ids, story]:
        wait_final(client, run_id)
    page = client.get("/api/runs", params={"flow": "pipeline", "limit": 2}).json()
    assert [r["id"] for r in page["runs"]] == ids[::-1][:2]
    rest = client.get(
        "/api/runs", params={"flow": "pipeline", "limit": 2, "before": page["next_before"]}
    ).json()
    assert [r["id"] for r in rest["runs"]] == [ids[0]]
    assert rest["next_before"] is None
    done = client.get("/api/runs", params={"status": "succeeded"}).json()["runs"]
    assert len(done) == 4
    assert client.get("/api/runs", params={"status": "queued"}).json()["runs"] == []
    later = client.get("/api/runs", params={"since": done[0]["created_at"]}).json()["runs"]
    assert [r["id"] for r in later] == [story]
    wrong = client.get("/api/runs", params={"status": "done"})
    assert wrong.status_code == 422
    assert "'succeeded'" in wrong.text  # the statuses it takes
    too_few = client.get("/api/runs", params={"limit": 0})
    assert too_few.status_code == 422
    assert too_few.json()["detail"] == "query.limit: Input should be greater than or equal to 1"


def test_an_unknown_run_is_404_on_every_route(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/api/runs/nope"),
        ("POST", "/api/runs/nope/cancel"),
        ("DELETE", "/api/runs/nope"),
        ("POST", "/api/runs/nope/retry"),
        ("POST", "/api/runs/nope/retry/fetch"),
        ("GET", "/api/runs/nope/checkpoint"),
        ("GET", "/api/runs/nope/items"),
        ("GET", "/api/runs/nope/events"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert "nope" in response.json()["detail"]


def test_a_failed_run_is_retried_from_its_failed_step_keeping_checkpoints(
    client: httpx.Client, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    run_id = start(client, "pipeline", {"fail_flag": str(flag)})["run"]["id"]
    failed = wait_final(client, run_id)
    assert failed["status"] == "failed"
    checkpoint = client.get(f"/api/runs/{run_id}/checkpoint").json()
    assert checkpoint["resumable"] is True
    assert checkpoint["last_successful_step"] == "fetch"
    assert checkpoint["failed_step"] == "analyze"
    assert list(checkpoint["step_outputs"]) == ["fetch"]
    fetched_at = checkpoint["step_outputs"]["fetch"]["timestamp"]
    flag.unlink()
    retried = client.post(f"/api/runs/{run_id}/retry").json()
    assert retried["reruns"] == ["analyze", "publish", "render"]
    assert retried["side_effects"] == []  # publish never ran: running it is no repeat
    assert retried["warning"] is None
    assert wait_final(client, run_id)["status"] == "succeeded"
    after = client.get(f"/api/runs/{run_id}/checkpoint").json()
    assert after["step_outputs"]["fetch"]["timestamp"] == fetched_at


def test_a_retry_that_would_publish_again_says_so(client: httpx.Client, tmp_path: Path) -> None:
    run_id = start(client, "pipeline")["run"]["id"]
    wait_final(client, run_id)
    refused = client.post(f"/api/runs/{run_id}/retry")
    assert refused.status_code == 409  # a succeeded run has nothing to retry from
    answer = client.post(f"/api/runs/{run_id}/retry/analyze")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["from_step"] == "analyze"
    assert body["reruns"] == ["analyze", "publish", "render"]
    assert body["side_effects"] == ["publish"]
    assert "publish" in body["warning"]
    assert "twice" in body["warning"]
    assert wait_final(client, run_id)["status"] == "succeeded"
    unknown = client.post(f"/api/runs/{run_id}/retry/paint")
    assert unknown.status_code == 422
    assert "fetch, analyze, publish, render" in unknown.json()["detail"]


def test_a_running_run_is_refused_a_retry_and_a_delete(
    client: httpx.Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = start(client, "story", {"gate_at": 1, "gate": str(gate)})["run"]["id"]
    while client.get(f"/api/runs/{run_id}").json()["status"] != "running":
        pass
    assert client.post(f"/api/runs/{run_id}/retry").status_code == 409
    deleting = client.delete(f"/api/runs/{run_id}")
    assert deleting.status_code == 409
    assert "cancel it first" in deleting.json()["detail"]
    cancelled = client.post(f"/api/runs/{run_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["cancel_requested"] is True
    gate.touch()
    assert wait_final(client, run_id)["status"] == "cancelled"
    events = client.get(f"/api/runs/{run_id}/events").text  # the log ends with the run
    assert "run.cancelled" in events
    assert client.delete(f"/api/runs/{run_id}").status_code == 204
    assert client.get(f"/api/runs/{run_id}").status_code == 404
    assert client.get(f"/api/runs/{run_id}/events").status_code == 404
    assert client.delete(f"/api/runs/{run_id}").status_code == 404


def test_items_are_paged_and_their_artifacts_served(client: httpx.Client) -> None:
    run_id = start(client, "pipeline", {"images": 3})["run"]["id"]
    wait_final(client, run_id)
    first = client.get(f"/api/runs/{run_id}/items", params={"limit": 2}).json()
    assert first["step"] == "render"
    assert [i["idx"] for i in first["items"]] == [0, 1]
    rest = client.get(
        f"/api/runs/{run_id}/items", params={"after": first["next_after"], "limit": 2}
    ).json()
    assert [i["idx"] for i in rest["items"]] == [2]
    assert rest["next_after"] is None
    workers = {i["worker"] for i in first["items"] + rest["items"]}
    assert len(workers) == 1, workers  # the service's own worker ran them all, and says so
    assert all(isinstance(w, str) and w for w in workers)
    ref = rest["items"][0]["output"]
    image = client.get(f"/api/artifacts/{ref['artifact']}")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == png(3, 1)
    named = client.get(
        f"/api/runs/{run_id}/items", params={"step": "render", "status": "succeeded"}
    )
    assert len(named.json()["items"]) == 3
    assert client.get(f"/api/runs/{run_id}/items", params={"step": "fetch"}).status_code == 422
    assert client.get(f"/api/runs/{run_id}/items", params={"status": "lost"}).status_code == 422


def test_artifacts_are_served_by_hash_only(client: httpx.Client, engine: Engine) -> None:
    for ref in ["../regen.db", "..%2Fregen.db", "a" * 64, "artifacts", "", "A" * 63]:
        response = client.get(f"/api/artifacts/{ref}")
        assert response.status_code == 404, ref
    assert b"SQLite" not in client.get("/api/artifacts/..%2F..%2Fregen.db").content


def test_a_queued_run_is_cancelled_at_once(engine: Engine, tmp_path: Path) -> None:
    from tests.service.conftest import FLOWS  # noqa: PLC0415
    from tests.service.server import Served  # noqa: PLC0415

    from regen.service import create_app  # noqa: PLC0415

    with Served(create_app(engine, flows=FLOWS)) as served, httpx.Client(base_url=served.url) as c:
        run_id = start(c, "story")["run"]["id"]
        assert c.post(f"/api/runs/{run_id}/cancel").json()["status"] == "cancelled"
        assert c.post(f"/api/runs/{run_id}/cancel").status_code == 409


def test_the_run_page_says_when_its_process_died_and_offers_the_retry(engine: Engine) -> None:
    from regen.engine._blocking import wait_for  # noqa: PLC0415 - a dead worker's claim

    run = engine.sync.start(pipeline).run
    claimed = wait_for(engine._store.claim("dead-worker", 0.05, time.time(), run_id=run.id))
    assert claimed is not None
    time.sleep(0.1)  # its lease runs out: the worker is as good as dead
    # No hosted worker here: nothing takes the run over while the page is read.
    with Served(create_app(engine, flows=FLOWS, execute=False)) as served:
        page = httpx.get(f"{served.url}/runs/{run.id}", timeout=10).text
    assert 'id="process-lost"' in page
    assert "Its process stopped answering" in page
    assert "disabled" not in page.split('id="steps"', 1)[1].split("</ol>", 1)[0]
