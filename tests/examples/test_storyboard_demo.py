"""The README's commands: the demo on its own simulator, and on a configured gateway (here a
simulator that hangs on one prompt, so the per-image timeout, read from the environment,
is what ends those images)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from examples.storyboard.testing import DEMO_SCRIPT, DEMO_STORYBOARDS

from regen.sim import run_simulator

ROOT = Path(__file__).resolve().parents[2]


def run_demo(home: Path, **env: str) -> tuple[int, list[dict[str, Any]], str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    for name in ("STORYBOARD_IMAGE_BASE_URL", "STORYBOARD_HOME"):
        if name not in env:
            environ.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "examples.storyboard", "demo", "--json", "--home", str(home)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


def test_the_demo_runs_on_its_own_simulator(tmp_path: Path) -> None:
    code, lines, stderr = run_demo(tmp_path)
    assert code == 0, stderr
    *events, last = lines
    result = last["result"]
    assert result["status"] == "partial"
    assert result["data"]["total_storyboards"] == 5
    assert result["data"]["success_count"] == 4
    assert len(result["failed_storyboard_ids"]) == 1
    assert events[0]["type"] == "stage_update"
    assert events[-1]["type"] == "done"
    assert (tmp_path / "regen.db").is_file()
    assert (tmp_path / "storyboard.db").is_file()


def test_the_demo_uses_the_configured_gateway_and_its_per_image_timeout(tmp_path: Path) -> None:
    lighthouse = DEMO_STORYBOARDS[3]["image_prompt"]
    rules = [*DEMO_SCRIPT, {"prompt": lighthouse, "then": "hang"}]
    with run_simulator(rules=rules) as gateway:
        code, lines, stderr = run_demo(
            tmp_path,
            STORYBOARD_IMAGE_BASE_URL=gateway.openai_base_url,
            STORYBOARD_IMAGE_API_KEY="sk-gateway-test-0004",
            STORYBOARD_IMAGE_TIMEOUT_S="0.5",
            STORYBOARD_IMAGE_RETRY_SLEEP_S="0.01",
        )
        stats = gateway.stats()
    assert code == 0, stderr
    *events, last = lines
    result = last["result"]
    assert result["data"]["success_count"] == 2  # #1 and #3
    assert result["data"]["failed_count"] == 3  # #2 refused; #4 and #5 hung
    hung = [e for e in events if e["type"] == "error" and "timeout" in e["error"]]
    assert len(hung) == 2
    assert all("共尝试 3 次" in e["error"] for e in hung)
    assert stats["prompts"][lighthouse]["routes"] == {"images": 3}
    assert stats["prompts"][lighthouse]["produced"] == 0
    assert "sk-gateway-test-0004" not in json.dumps(lines) + stderr
