"""Choosing faults: seeded profiles are reproducible; scripts fail N times, then succeed."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from regen.sim import SimServer, run_simulator
from regen.sim._faults import FaultSpec
from regen.sim._injector import Injector
from regen.sim._script import Ident, Script, parse_rules

MESSAGES = [{"role": "user", "content": "fox"}]


def outcomes(seed: int, prompts: list[str]) -> list[int]:
    """Status of each chat request, sent in order, under a seeded profile."""
    profile = {"rate_limit": 0.2, "server_error": 0.2, "bad_gateway_html": 0.1}
    statuses = []
    with (
        run_simulator(faults=profile, seed=seed) as sim,
        httpx.Client(headers={"Authorization": "Bearer sk-x"}) as http,
    ):
        for prompt in prompts:
            body = {"model": "sim", "messages": [{"role": "user", "content": prompt}]}
            statuses.append(
                http.post(f"{sim.openai_base_url}/chat/completions", json=body).status_code
            )
    return statuses


def test_same_seed_gives_the_same_faults() -> None:
    prompts = [f"prompt {i % 7}" for i in range(60)]
    first = outcomes(7, prompts)
    assert first == outcomes(7, prompts)
    assert first != outcomes(8, prompts)
    assert {200, 429, 500, 502} <= set(first)


def test_profile_draws_do_not_depend_on_other_prompts() -> None:
    script = Script()
    alone = Injector({"server_error": 0.5}, 3, script)
    mixed = Injector({"server_error": 0.5}, 3, script)
    fox = Ident(prompt="fox")
    draws_alone = [bool(alone.plan("chat", None, fox).faults) for _ in range(20)]
    draws_mixed = []
    for _ in range(20):
        mixed.plan("chat", None, Ident(prompt="cat"))
        draws_mixed.append(bool(mixed.plan("chat", None, fox).faults))
    assert draws_alone == draws_mixed


def test_profile_rate_is_roughly_the_probability() -> None:
    injector = Injector({"hang": 0.1}, 0, Script())
    hits = sum("hang" in injector.plan("chat", None, Ident(prompt=str(i))) for i in range(2000))
    assert 140 < hits < 260


def test_profile_draws_task_faults_at_submit_not_at_poll() -> None:
    injector = Injector({"task_failed": 1.0}, 0, Script())
    assert "task_failed" in injector.plan("dashscope_submit", None, Ident(prompt="x"))
    assert not injector.plan("dashscope_task", None, Ident(task_id="t")).faults


def test_image_faults_named_on_generation_are_carried() -> None:
    plan = Injector({}, 0, Script()).plan("images", "fake_image,hang", Ident(prompt="x"))
    assert plan.carried == (FaultSpec("fake_image"),)
    assert "hang" in plan


def test_faults_that_do_not_apply_are_ignored_and_counted(sim: SimServer) -> None:
    with OpenAI(base_url=sim.openai_base_url, api_key="sk", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="sim", messages=MESSAGES, extra_headers={"X-Regen-Fault": "task_stuck"}
        )
    assert reply.choices
    assert sim.stats()["ignored_faults"] == {"task_stuck": 1}


def test_script_fails_twice_with_hang_then_succeeds(sim: SimServer) -> None:
    sim.script({"prompt": "fox", "steps": ["hang", "hang"]})
    with OpenAI(base_url=sim.openai_base_url, api_key="sk", max_retries=0, timeout=0.3) as client:
        for _ in range(2):
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="sim", messages=MESSAGES)
        assert client.chat.completions.create(model="sim", messages=MESSAGES).choices
        other = [{"role": "user", "content": "not the fox"}]
        assert client.chat.completions.create(model="sim", messages=other).choices
    stats = sim.stats()
    assert stats["prompts"]["fox"]["faults"] == {"hang": 2}
    assert stats["prompts"]["fox"]["produced"] == 1


def test_script_posted_at_run_time_and_route_restricted(sim: SimServer) -> None:
    rules = {
        "rules": [
            {"prompt": "fox", "route": "images", "steps": ["server_error", "rate_limit:1"]},
            {"prompt_contains": "boat", "then": "content_policy"},
        ]
    }
    assert httpx.post(f"{sim.url}/_sim/script", json=rules).json() == {"ok": True, "rules": 2}
    with OpenAI(base_url=sim.openai_base_url, api_key="sk", max_retries=0) as client:
        assert client.chat.completions.create(model="sim", messages=MESSAGES).choices
        with pytest.raises(openai.InternalServerError):
            client.images.generate(prompt="fox")
        with pytest.raises(openai.RateLimitError):
            client.images.generate(prompt="fox")
        assert client.images.generate(prompt="fox").data
        for _ in range(3):  # `then` repeats forever
            with pytest.raises(openai.BadRequestError):
                client.images.generate(prompt="a red boat")
    described = httpx.get(f"{sim.url}/_sim/script").json()["rules"]
    assert [(rule["used"], rule["active"]) for rule in described] == [(2, False), (3, True)]


def test_script_by_prompt_can_target_the_download(sim: SimServer) -> None:
    sim.script({"prompt": "fox", "route": "file", "steps": ["fake_image"]})
    with OpenAI(base_url=sim.openai_base_url, api_key="sk", max_retries=0) as client:
        result = client.images.generate(prompt="fox")
    assert result.data
    assert result.data[0].url
    assert httpx.get(result.data[0].url).content.startswith(b"<?xml")
    assert httpx.get(result.data[0].url).content.startswith(b"\x89PNG")


def test_script_by_task_id(sim: SimServer) -> None:
    auth = {"Authorization": "Bearer sk"}
    task = httpx.post(f"{sim.photo_base_url}/art-photos", json={"prompt": "x"}, headers=auth).json()
    sim.script({"task_id": task["task_id"], "steps": ["poll_rate_limit", "ok", "task_unknown"]})
    statuses = [
        httpx.get(f"{sim.photo_base_url}/tasks/{task['task_id']}", headers=auth).status_code
        for _ in range(4)
    ]
    assert statuses == [429, 200, 404, 200]


def test_script_file_in_toml(tmp_path: Path) -> None:
    script = tmp_path / "faults.toml"
    script.write_text(
        '[[rules]]\nprompt = "fox"\nsteps = ["server_error", "server_error"]\n', encoding="utf-8"
    )
    with (
        run_simulator(script=script) as sim,
        OpenAI(base_url=sim.openai_base_url, api_key="sk", max_retries=0) as client,
    ):
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="sim", messages=MESSAGES)
        assert client.chat.completions.create(model="sim", messages=MESSAGES).choices
        sim.reset()  # rewinds the file's rules
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="sim", messages=MESSAGES)


def test_bad_script_is_refused_with_a_clear_message(sim: SimServer, tmp_path: Path) -> None:
    response = httpx.post(
        f"{sim.url}/_sim/script", json={"rules": [{"prompt": "x", "steps": ["gremlin"]}]}
    )
    assert response.status_code == 400
    assert "unknown fault 'gremlin'" in response.json()["error"]
    with pytest.raises(ValueError, match="needs at least one of"):
        parse_rules([{"steps": ["hang"]}])
    with pytest.raises(ValueError, match="unknown key"):
        parse_rules([{"prompt": "x", "step": ["hang"]}])
    with pytest.raises(ValueError, match="unknown route"):
        parse_rules([{"route": "nowhere", "steps": ["hang"]}])
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rules]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid toml"):
        run_simulator(script=broken).__enter__()


def test_header_beats_script(sim: SimServer) -> None:
    sim.script({"prompt": "fox", "then": "server_error"})
    with OpenAI(base_url=sim.openai_base_url, api_key="sk", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="sim", messages=MESSAGES, extra_headers={"X-Regen-Fault": "auth"}
            )
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="sim", messages=MESSAGES)


def test_put_script_replaces_the_rules(sim: SimServer) -> None:
    sim.script({"prompt": "fox", "then": "server_error"})
    replaced = httpx.put(
        f"{sim.url}/_sim/script", json={"rules": [{"prompt": "cat", "then": "auth"}]}
    )
    assert replaced.json() == {"ok": True, "rules": 1}
    assert [rule["prompt"] for rule in httpx.get(f"{sim.url}/_sim/script").json()["rules"]] == [
        "cat"
    ]
