"""``/_sim/stats`` and ``/_sim/reset``: what the server saw, per route, fault and prompt."""

from __future__ import annotations

import contextlib

import httpx
import openai
import pytest
from openai import OpenAI

from regen.sim import FAULTS, SimServer


def test_stats_count_requests_outcomes_and_statuses_per_route(sim: SimServer) -> None:
    with OpenAI(base_url=sim.openai_base_url, api_key="sk", max_retries=0) as client:
        for fault in (None, "rate_limit", None):
            headers = {"X-Regen-Fault": fault} if fault else {}
            with contextlib.suppress(openai.RateLimitError):
                client.images.generate(prompt="a cat", extra_headers=headers)
        client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "a cat"}])
    stats = sim.stats()
    assert stats["requests"] == 4
    assert stats["routes"]["images"] == {
        "requests": 3,
        "outcomes": {"ok": 2, "rate_limit": 1},
        "statuses": {"200": 2, "429": 1},
    }
    assert stats["faults"] == {"rate_limit": 1}
    assert stats["prompts"]["a cat"] == {
        "requests": 4,
        "ok": 3,
        "produced": 3,
        "routes": {"images": 3, "chat": 1},
        "faults": {"rate_limit": 1},
    }


def test_http_stats_are_the_same_as_the_python_ones(sim: SimServer) -> None:
    httpx.get(f"{sim.openai_base_url}/models", headers={"Authorization": "Bearer sk"})
    over_http = httpx.get(f"{sim.url}/_sim/stats").json()
    in_python = sim.stats()
    for stats in (over_http, in_python):
        stats.pop("uptime")
    assert over_http == in_python
    assert in_python["routes"]["models"]["requests"] == 1


def test_reset_forgets_everything(sim: SimServer) -> None:
    auth = {"Authorization": "Bearer sk"}
    httpx.post(f"{sim.photo_base_url}/art-photos", json={"prompt": "x"}, headers=auth)
    sim.script({"prompt": "y", "then": "server_error"})
    assert sim.stats()["tasks"]
    assert httpx.post(f"{sim.url}/_sim/reset").json() == {"ok": True}
    stats = sim.stats()
    assert stats["requests"] == 0
    assert stats["tasks"] == {}
    assert stats["prompts"] == {}
    assert httpx.get(f"{sim.url}/_sim/script").json() == {"rules": []}


def test_control_routes_are_not_counted_or_faulted(sim: SimServer) -> None:
    response = httpx.get(f"{sim.url}/_sim/stats", headers={"X-Regen-Fault": "server_error"})
    assert response.status_code == 200
    assert response.json()["requests"] == 0


def test_fault_catalogue_lists_every_fault_with_its_routes(sim: SimServer) -> None:
    catalogue = httpx.get(f"{sim.url}/_sim/faults").json()
    assert [fault["name"] for fault in catalogue["faults"]] == list(FAULTS)
    by_name = {fault["name"]: fault for fault in catalogue["faults"]}
    assert by_name["stream_cut"]["routes"] == ["chat_stream"]
    assert "images" in by_name["fake_image"]["carried_from"]


@pytest.mark.parametrize("path", ["/v1/nothing", "/_sim/nothing"])
def test_unknown_paths_are_404(sim: SimServer, path: str) -> None:
    assert httpx.get(f"{sim.url}{path}").status_code == 404


def test_wrong_method_is_405(sim: SimServer) -> None:
    assert httpx.get(f"{sim.openai_base_url}/chat/completions").status_code == 405
