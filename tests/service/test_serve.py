"""``regen serve`` as a real process: binding rules, the token from the environment, an
empty directory, --no-execute, and an event stream resumed across a server restart (the
last two on each store backend, named by ``REGEN_DATABASE_URL``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from tests.service.server import PYTHONPATH, ROOT, ServeProcess, sse_events
from tests.service.waiting import wait_final

STORY = "tests.service.flows:story"


def regen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "regen.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": PYTHONPATH, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_binding_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    refused = regen("serve", "--host", "0.0.0.0", cwd=tmp_path)
    assert refused.returncode == 2
    assert "give it a token (--token or REGEN_TOKEN)" in refused.stderr
    by_env = regen("serve", cwd=tmp_path, env={"REGEN_SERVE_HOST": "0.0.0.0"})
    assert by_env.returncode == 2
    assert "give it a token" in by_env.stderr
    assert not (tmp_path / ".regen").exists()  # refused before anything was created


def test_a_blank_token_is_refused_in_one_line(tmp_path: Path) -> None:
    for args, env in (
        (("serve", "--host", "0.0.0.0"), {"REGEN_TOKEN": "   "}),
        (("serve", "--token", " "), {}),
    ):
        refused = regen(*args, cwd=tmp_path, env=env)
        assert refused.returncode == 2
        assert "the token is blank" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert not (tmp_path / ".regen").exists()


def test_it_starts_in_an_empty_directory_with_its_token_from_the_environment(
    tmp_path: Path,
) -> None:
    token = "serve-token-8c1e44d2a7"
    server = subprocess.Popen(
        [sys.executable, "-m", "regen.cli", "serve", "--port", "0", "--flow", STORY],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PYTHONPATH, "REGEN_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "token: required" in line
        assert token not in line
        url = line.split()[2]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, timeout=10) as c:
            for _ in range(500):
                try:
                    c.get("/healthz")
                    break
                except httpx.TransportError:
                    continue
            assert c.get("/api/runs").status_code == 401
            created = c.post("/api/runs", json={"flow": "story"}, headers=headers)
            assert created.status_code == 201
            c.headers.update(headers)
            assert wait_final(c, created.json()["run"]["id"])["status"] == "succeeded"
        assert (tmp_path / ".regen" / "regen.db").exists()
    finally:
        server.kill()
        server.communicate(timeout=10)


def test_no_execute_only_queues(database: str, tmp_path: Path) -> None:
    on = {"REGEN_DATABASE_URL": database}
    with (
        ServeProcess(tmp_path / "home", "--flow", STORY, "--no-execute", env=on) as served,
        httpx.Client(base_url=served.url) as c,
    ):
        run_id = c.post("/api/runs", json={"flow": "story"}).json()["run"]["id"]
        worker = regen(
            "--home",
            str(tmp_path / "home"),
            "worker",
            "--flow",
            STORY,
            "--max-runs",
            "1",
            cwd=ROOT,
            env=on,
        )
        assert worker.returncode == 0, worker.stderr
        assert c.get(f"/api/runs/{run_id}").json()["status"] == "succeeded"


def test_a_stream_resumes_across_a_server_restart_with_nothing_lost_or_repeated(
    database: str, tmp_path: Path
) -> None:
    home, gate = tmp_path / "home", tmp_path / "gate"
    env = {"REGEN_LEASE_TTL_S": "1", "REGEN_DATABASE_URL": database}
    first = ServeProcess(home, "--flow", STORY, env=env).start()
    try:
        with httpx.Client(base_url=first.url, timeout=10) as c:
            run_id = c.post(
                "/api/runs",
                json={"flow": "story", "params": {"words": 6, "gate_at": 2, "gate": str(gate)}},
            ).json()["run"]["id"]
            before = []
            with c.stream("GET", f"/api/runs/{run_id}/events") as response:
                for event in sse_events(response):
                    if "id" in event:
                        before.append(event)
                        if len(before) == 5:  # queued, started, step, w0, w1; held at the gate
                            break
    finally:
        first.kill()  # mid-run: the run's process is gone with the server
    gate.touch()
    with (
        ServeProcess(home, "--flow", STORY, env=env) as second,
        httpx.Client(base_url=second.url, timeout=30) as c,
    ):
        after = []
        headers = {"Last-Event-ID": before[-1]["id"]}
        with c.stream("GET", f"/api/runs/{run_id}/events", headers=headers) as response:
            after = [e for e in sse_events(response) if "event" in e]
    assert after[-1]["event"] == "end"
    ids = [int(e["id"]) for e in before + after if "id" in e]
    assert ids == list(range(1, ids[-1] + 1))  # none lost, none repeated
    shown = ""
    for event in before + after:
        data = json.loads(event["data"])
        if event["event"] == "stream.reset":
            shown = ""
        elif event["event"] == "chunk":
            shown += data["data"]["text"]
    assert shown == "w0 w1 w2 w3 w4 w5 "
    assert json.loads(after[-1]["data"])["status"] == "succeeded"
