"""``regen sim``: a real process serving on loopback, options from flags and REGEN_SIM_*."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from regen.cli import _sim as sim_command
from regen.cli import cli

RUN_CLI = "import sys; from regen.cli import main; sys.argv[0] = 'regen'; main()"


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    assert process.stderr is not None
    line = process.stdout.readline()
    if not line.startswith("regen sim listening on "):
        process.kill()
        _, errors = process.communicate(timeout=10)
        process.stdout.close()
        process.stderr.close()
        pytest.fail(f"regen sim did not start: {line}{errors}")
    return process, line.split()[-1]


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=5)
    finally:
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    return code


def test_serves_until_sigterm_then_exits_cleanly() -> None:
    process, url = start("--port", "0", "--keys", "k1,k2", "--task-seconds", "200ms")
    try:
        assert (
            httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer k2"}).status_code == 200
        )
        assert (
            httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer k3"}).status_code == 401
        )
        started = time.perf_counter()
    finally:
        code = stop(process)
    assert code == 0
    assert time.perf_counter() - started < 3


def test_options_come_from_environment_variables(tmp_path: Path) -> None:
    script = tmp_path / "faults.json"
    script.write_text('{"rules": [{"prompt": "fox", "steps": ["server_error"]}]}', encoding="utf-8")
    env = {"REGEN_SIM_PORT": "0", "REGEN_SIM_SCRIPT": str(script), "REGEN_SIM_FAULTS": "html_200=1"}
    process, url = start(env=env)
    try:
        with httpx.Client(headers={"Authorization": "Bearer sk"}) as http:
            body = {"model": "sim", "messages": [{"role": "user", "content": "fox"}]}
            assert http.post(f"{url}/v1/chat/completions", json=body).status_code == 500
            html = http.post(f"{url}/v1/chat/completions", json=body)
            assert html.headers["content-type"].startswith("text/html")
    finally:
        assert stop(process) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "gremlins=0.1"], "unknown fault 'gremlins'"),
        (["--faults", "hang=2"], "between 0 and 1"),
        (["--latency", "fast"], "not a duration"),
        (["--outage-after", "3"], "needs outage_for (--outage-for)"),
        (["--burst", "3"], "needs rps (--rps)"),
        (["--rps", "0"], "--rps"),
    ],
)
def test_bad_options_are_refused_with_a_message(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["sim", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_script_file_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "faults.toml"
    script.write_text('[[rules]]\nprompt = "x"\nsteps = ["gremlin"]\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["sim", "--script", str(script)])
    assert result.exit_code == 2
    assert "unknown fault 'gremlin'" in result.output


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sim_command.importlib.util.find_spec
    monkeypatch.setattr(
        sim_command.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "PIL" else real(name, *a),
    )
    result = CliRunner().invoke(cli, ["sim"])
    assert result.exit_code == 1
    assert "pip install -e '.[sim]'" in result.output
    assert "PIL" in result.output


def _chat_statuses(url: str, count: int) -> list[int]:
    with httpx.Client(headers={"Authorization": "Bearer sk"}, timeout=10) as http:
        body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
        chat = f"{url}/v1/chat/completions"
        return [http.post(chat, json=body).status_code for _ in range(count)]


def test_the_same_faults_and_seed_on_the_command_line_give_the_same_faults() -> None:
    runs = []
    for _ in range(2):
        process, url = start("--port", "0", "--faults", "server_error=0.5", "--seed", "7")
        try:
            runs.append(_chat_statuses(url, 20))
        finally:
            stop(process)
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}  # the profile applies, to some requests only
    process, url = start("--port", "0", "--faults", "server_error=0.5", "--seed", "8")
    try:
        assert _chat_statuses(url, 20) != runs[0]
    finally:
        stop(process)


def test_latency_and_jitter_on_the_command_line_delay_every_answer() -> None:
    process, url = start("--port", "0", "--latency", "300ms", "--jitter", "50ms")
    try:
        with httpx.Client(headers={"Authorization": "Bearer sk"}, timeout=10) as http:
            for _ in range(3):
                started = time.perf_counter()
                assert http.get(f"{url}/v1/models").status_code == 200
                assert time.perf_counter() - started >= 0.25  # 300 ms ± 50 ms, at least
    finally:
        stop(process)


def test_an_outage_and_a_per_second_limit_from_the_command_line() -> None:
    process, url = start(
        "--port", "0", "--outage-after", "3", "--outage-for", "30s", "--rps", "100", "--burst", "1"
    )
    try:
        with httpx.Client(headers={"Authorization": "Bearer sk"}, timeout=10) as http:
            statuses = []
            for _ in range(4):
                time.sleep(0.02)  # a token back between requests
                statuses.append(http.get(f"{url}/v1/models").status_code)
            assert statuses == [200, 200, 503, 503]
            stats = http.get(f"{url}/_sim/stats").json()
            assert stats["outage"]["answered"] == 2
            assert stats["limit"] == {"rps": 100.0, "burst": 1, "answered": 0}
    finally:
        assert stop(process) == 0
