"""daily_news with a second image provider: while DashScope is down, OpenAI's images stand
in, and each post says which provider made its image; with one key, nothing changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.daily_news.images import AliyunImageClient, fallback_from_env
from examples.daily_news.posts import PostStore

from regen import ConfigError
from regen.sim import SimServer, run_simulator

ROOT = Path(__file__).resolve().parents[2]
DASHSCOPE_KEY = "sk-test-daily-news-dashscope-0001"
OPENAI_KEY = "sk-test-daily-news-openai-0002"
DATE = "2025-06-01"


@pytest.fixture
def down() -> Iterator[SimServer]:
    """DashScope, answering 503 to every request from the first on, for a minute."""
    with run_simulator(task_seconds=0.02, outage_after=1, outage_for=60) as server:
        yield server


@pytest.fixture
def backup() -> Iterator[SimServer]:
    """The second provider: an OpenAI-compatible image API."""
    with run_simulator() as server:
        yield server


def auto(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The requirement's command, with this checkout's regen and only ``env``'s providers."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("ALIYUN_IMAGE_", "DASHSCOPE_", "OPENAI_", "IMAGE_PROVIDER", "REGEN_", "DAILY_NEWS_")
        )
    }
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    base["ALIYUN_IMAGE_POLL_INTERVAL_S"] = "0.02"
    base["COLUMNS"] = "400"
    return subprocess.run(
        [sys.executable, "-m", "examples.daily_news", "auto", "--date", DATE, *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def regen_show(home: Path, run_id: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    shown = subprocess.run(
        [sys.executable, "-m", "regen.cli", "--home", str(home), "show", run_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return shown.stdout


def produced(sim: SimServer) -> int:
    return sum(int(row.get("produced", 0)) for row in sim.stats()["prompts"].values())


def test_while_dashscope_is_down_every_image_comes_from_the_fallback(
    tmp_path: Path, down: SimServer, backup: SimServer
) -> None:
    env = {
        "IMAGE_PROVIDER": "aliyun",
        "DASHSCOPE_API_KEY": DASHSCOPE_KEY,
        "DASHSCOPE_BASE_URL": down.dashscope_base_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": backup.openai_base_url,
    }
    result = auto(tmp_path, env, "--count", "3", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded"
    assert len(summary["succeeded"]) == 3
    assert summary["failed"] == []
    assert "while it is down: openai at " + backup.openai_base_url in result.stderr
    assert result.stderr.count("(made by the fallback openai: aliyun is down)") == 3

    posts = {post["post_id"]: post for post in PostStore(tmp_path / "data").all()}
    for post_id in summary["succeeded"]:
        image = posts[post_id]["platform"]["image"]
        assert (image["provider"], image["model"]) == ("openai", "dall-e-3")
        assert image["attempts"] == 1  # the fallback served within the first attempt
        assert (tmp_path / "data" / "posts" / post_id / image["path"]).read_bytes()[:4] == (
            b"\x89PNG"
        )
    assert produced(down) == 0
    assert produced(backup) == 3
    # The breaker opened after a few refusals: later images never asked DashScope at all.
    assert 1 <= down.stats()["outage"]["answered"] <= 5

    shown = regen_show(tmp_path / "data" / "regen", summary["run_id"])
    assert "provider" in shown
    assert shown.count("openai") >= 3


def test_images_dashscope_cannot_deliver_come_from_the_fallback(
    tmp_path: Path, backup: SimServer
) -> None:
    # DashScope makes every image, but its image host answers an XML page for each.
    with run_simulator(task_seconds=0.02, faults={"fake_image": 1.0}) as dead_cdn:
        env = {
            "IMAGE_PROVIDER": "aliyun",
            "DASHSCOPE_API_KEY": DASHSCOPE_KEY,
            "DASHSCOPE_BASE_URL": dead_cdn.dashscope_base_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": backup.openai_base_url,
        }
        result = auto(tmp_path, env, "--count", "5", "--json")
        undelivered = dead_cdn.stats()["routes"]["file"]["outcomes"]
        tasks = len(dead_cdn.stats()["tasks"])
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert len(summary["succeeded"]) == 5
    posts = {post["post_id"]: post for post in PostStore(tmp_path / "data").all()}
    for post_id in summary["succeeded"]:
        image = posts[post_id]["platform"]["image"]
        assert image["provider"] == "openai"
        assert image["attempts"] == 1  # handed over within the attempt that met the bad image
    # Each image DashScope made was fetched once, found bad, and counted against it.
    assert undelivered == {"fake_image": tasks}
    assert 1 <= tasks <= 5
    assert produced(backup) == 5


def test_with_one_key_images_come_from_dashscope_only(
    tmp_path: Path, down: SimServer, backup: SimServer
) -> None:
    env = {
        "IMAGE_PROVIDER": "aliyun",
        "DASHSCOPE_API_KEY": DASHSCOPE_KEY,
        "DASHSCOPE_BASE_URL": down.dashscope_base_url,
        "ALIYUN_IMAGE_MAX_ATTEMPTS": "2",
        "ALIYUN_IMAGE_RETRY_SLEEP_S": "0",
    }
    result = auto(tmp_path, env, "--count", "1", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["succeeded"] == []
    assert len(summary["failed"]) == 5  # every candidate given up on DashScope's 503s
    assert down.stats()["outage"]["answered"] == 10  # no breaker: two attempts each
    assert backup.stats()["requests"] == 0

    down.recover()
    again = auto(tmp_path, env, "--count", "1", "--json", "--retry-failed")
    assert again.returncode == 0, again.stdout + again.stderr
    post_id = json.loads(again.stdout)["succeeded"][0]
    post = PostStore(tmp_path / "data").load(post_id)
    assert post is not None
    assert post["platform"]["image"]["provider"] == "aliyun"
    assert post["platform"]["image"]["task_id"] in down.stats()["tasks"]


def test_the_fallback_is_declared_only_when_its_key_is_set() -> None:
    assert fallback_from_env({"DASHSCOPE_API_KEY": DASHSCOPE_KEY}) == ()
    (openai,) = fallback_from_env(
        {"DASHSCOPE_API_KEY": DASHSCOPE_KEY, "OPENAI_API_KEY": OPENAI_KEY}
    )
    assert (openai.name, openai.kind, openai.base_url) == (
        "openai",
        "openai",
        "https://api.openai.com/v1",
    )
    client = AliyunImageClient.from_env(
        {"DASHSCOPE_API_KEY": DASHSCOPE_KEY, "OPENAI_API_KEY": OPENAI_KEY}
    )
    assert [f.name for f in client.fallback] == ["openai"]
    assert OPENAI_KEY not in repr(client)
    # DASHSCOPE_FALLBACK chooses another declared provider instead.
    (deepseek,) = fallback_from_env(
        {
            "DASHSCOPE_API_KEY": DASHSCOPE_KEY,
            "OPENAI_API_KEY": OPENAI_KEY,
            "DEEPSEEK_API_KEY": "sk-test-deepseek-0003",
            "DASHSCOPE_FALLBACK": "deepseek",
        }
    )
    assert deepseek.name == "deepseek"


def test_a_fallback_without_a_key_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="moonshot"):
        fallback_from_env({"DASHSCOPE_API_KEY": DASHSCOPE_KEY, "DASHSCOPE_FALLBACK": "moonshot"})
    with pytest.raises(ConfigError, match="MOONSHOT_API_KEY"):
        fallback_from_env(
            {
                "DASHSCOPE_API_KEY": DASHSCOPE_KEY,
                "DASHSCOPE_FALLBACK": "moonshot",
                "MOONSHOT_BASE_URL": "https://example.test/v1",
            }
        )
