"""Starting and stopping: fast, no leaked threads, hung requests do not block shutdown."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import httpx
import pytest
import uvicorn

from regen.sim import SimConfig, run_simulator
from regen.sim._server import TESTED_UVICORN, UnsupportedUvicorn, _release, check_uvicorn

ROOT = Path(__file__).resolve().parents[2]

CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"Authorization": "Bearer sk"}


def test_starts_and_stops_quickly_without_leaking_threads() -> None:
    with run_simulator():
        pass  # the first start pays for imports
    before = set(threading.enumerate())
    started = time.perf_counter()
    with run_simulator() as sim:
        startup = time.perf_counter() - started
        assert httpx.get(f"{sim.url}/_sim/health").json() == {"ok": True}
    assert startup < 1.0  # typically a few milliseconds; generous for loaded CI machines
    assert set(threading.enumerate()) == before


def test_a_hung_request_does_not_block_shutdown() -> None:
    answers: list[object] = []

    def call(url: str) -> None:
        try:
            answers.append(
                httpx.post(url, json=CHAT, headers={**AUTH, "X-Regen-Fault": "hang"}, timeout=10)
            )
        except httpx.HTTPError as exc:
            answers.append(exc)

    with run_simulator() as sim:
        caller = threading.Thread(target=call, args=(f"{sim.openai_base_url}/chat/completions",))
        caller.start()
        deadline = time.monotonic() + 30
        while sim.stats()["faults"].get("hang", 0) == 0:  # the request is hanging
            assert time.monotonic() < deadline, "the hung request never reached the simulator"
            time.sleep(0.01)
        stopping = time.perf_counter()
    stopped = time.perf_counter() - stopping
    caller.join(5)
    assert stopped < 1.5  # well inside the 2 s grace it would wait for a request it did not wake
    assert len(answers) == 1
    # Woken and answered, not cut when the grace ran out.
    assert isinstance(answers[0], httpx.Response)
    assert answers[0].status_code == 503


def test_latency_model_delays_answers() -> None:
    with run_simulator(latency=0.15, jitter=0.01) as sim, httpx.Client(headers=AUTH) as http:
        http.get(f"{sim.openai_base_url}/models")
        started = time.perf_counter()
        http.get(f"{sim.openai_base_url}/models")
        assert time.perf_counter() - started >= 0.13


def test_a_refused_key_takes_the_latency_too() -> None:
    # A client's timeout budget sees a 401 after a round trip, as from a real provider.
    with run_simulator(latency=0.15, keys=["sk-right"]) as sim, httpx.Client() as http:
        wrong = {"Authorization": "Bearer sk-wrong"}
        http.get(f"{sim.openai_base_url}/models", headers=wrong)
        started = time.perf_counter()
        refused = http.get(f"{sim.openai_base_url}/models", headers=wrong)
        assert time.perf_counter() - started >= 0.13
    assert refused.status_code == 401


def test_rpm_limit_is_enforced_when_configured() -> None:
    with run_simulator(rpm=2) as sim, httpx.Client(headers=AUTH) as http:
        responses = [http.get(f"{sim.openai_base_url}/models") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in responses] == ["1", "0", "0"]
    assert float(responses[2].headers["retry-after"]) > 0


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="add up to"):
        SimConfig(faults={"hang": 0.7, "rate_limit": 0.6})
    with pytest.raises(ValueError, match="unknown fault"):
        SimConfig(faults={"gremlins": 0.1})
    with pytest.raises(ValueError, match="latency"):
        SimConfig(latency=-1)
    with pytest.raises(TypeError, match="not both"):
        run_simulator(SimConfig(), seed=3).__enter__()


def test_two_simulators_side_by_side() -> None:
    with run_simulator() as one, run_simulator() as two:
        assert one.url != two.url
        for sim in (one, two):
            assert (
                httpx.post(
                    f"{sim.openai_base_url}/chat/completions", json=CHAT, headers=AUTH
                ).status_code
                == 200
            )
        assert one.stats()["requests"] == two.stats()["requests"] == 1


# --- the uvicorn releases the simulator runs on ---------------------------------------------


def test_the_installed_uvicorn_is_a_tested_release() -> None:
    low, below = TESTED_UVICORN
    assert _release(low) <= _release(uvicorn.__version__) < _release(below), (
        f"uvicorn {uvicorn.__version__} is not in the tested range >={low},<{below}: run the "
        "simulator's tests on it, then widen TESTED_UVICORN and pyproject.toml together"
    )
    check_uvicorn()


def test_pyproject_pins_the_tested_range_in_the_sim_and_server_extras() -> None:
    low, below = TESTED_UVICORN
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in ("sim", "server"):
        pins = [r.replace(" ", "") for r in extras[extra] if r.startswith("uvicorn")]
        assert pins == [f"uvicorn[standard]>={low},<{below}"], extra


@pytest.mark.parametrize("version", ["0.29.0", "0.56.0", "1.0.0"])
def test_an_untested_uvicorn_is_refused_with_what_to_install(version: str) -> None:
    with pytest.raises(UnsupportedUvicorn) as caught:
        check_uvicorn(version)
    message = str(caught.value)
    assert f"uvicorn {version} is installed" in message
    assert "pip install 'uvicorn[standard]>=0.30,<0.56'" in message


def test_regen_sim_on_an_untested_uvicorn_says_so_in_one_line() -> None:
    script = (
        "import sys, uvicorn; uvicorn.__version__ = '0.99.0'; "
        "from regen.cli import main; sys.argv[0] = 'regen'; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "sim", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # refused before listening
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "uvicorn 0.99.0 is installed" in lines[0]
