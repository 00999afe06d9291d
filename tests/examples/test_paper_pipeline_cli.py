"""The example's command line: ``python -m examples.paper_pipeline run|retry|show|gc``."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.paper_pipeline import Config, PaperPipeline
from examples.paper_pipeline.__main__ import main

from regen.sim import SimServer, run_simulator

ROOT = Path(__file__).resolve().parents[2]
REGEN = Path(sys.executable).with_name("regen")
FLOW = "examples.paper_pipeline.pipeline:flow"
DAY = "2025-12-29"
TASK = "task_publish_20251229"
_PROVIDER_VARIABLES = ("OPENAI", "DEEPSEEK", "DASHSCOPE", "MOONSHOT")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: a data directory of its own, no provider keys (the simulator)."""
    for name in list(os.environ):
        if name.startswith(_PROVIDER_VARIABLES) or name.startswith(
            ("AUTO_RETRY_", "REGEN_", "PAPER_PIPELINE_")
        ):
            monkeypatch.delenv(name)
        if name == "CHECKPOINT_RETENTION_HOURS":
            monkeypatch.delenv(name)
    monkeypatch.setenv("REGEN_HOME", str(tmp_path))
    monkeypatch.setenv("AUTO_RETRY_ENABLED", "false")
    return tmp_path


@pytest.fixture
def real_provider() -> Iterator[SimServer]:
    """A simulator standing in for a real provider configured by OPENAI_* variables."""
    with run_simulator() as server:
        yield server


def outbox(home: Path) -> list[dict[str, object]]:
    path = home / "paper_pipeline" / "outbox.json"
    return json.loads(path.read_text()) if path.exists() else []


def test_a_failed_run_is_shown_resumable_and_retry_finishes_it(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAPER_PIPELINE_FAIL_STEP", "render_images")
    assert main(["run", "--day", DAY]) == 1
    out = capsys.readouterr().out
    assert "✓ openai_analyze" in out
    assert "✗ render_images: PAPER_PIPELINE_FAIL_STEP=render_images" in out
    assert f"resumable from render_images: python -m examples.paper_pipeline retry {TASK}" in out

    monkeypatch.delenv("PAPER_PIPELINE_FAIL_STEP")
    assert main(["retry", TASK]) == 0
    out = capsys.readouterr().out
    assert "▶ fetch_papers" not in out
    assert "▶ openai_analyze" not in out
    assert "▶ render_images" in out
    assert "published note_" in out

    assert main(["show", TASK, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["status"], record["retry_count"], record["manual_retry_count"]) == (
        "succeeded",
        0,  # automatic retries: switched off here
        1,  # the retry asked for above
    )
    assert list(record["checkpoint"]["step_outputs"]) == [s["name"] for s in record["steps"]]
    assert len(outbox(home)) == 1


def test_retry_from_a_named_step_and_show_all(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--day", DAY, "--json"]) == 0
    assert main(["retry", DAY, "--from", "render_images"]) == 0
    out = capsys.readouterr().out
    assert "▶ openai_analyze" not in out
    assert "▶ render_images" in out
    assert main(["show", "--all", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["task_id"] == TASK


def test_gc_reports_what_it_cleaned(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gc", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoints_expired"] == 0
    assert main(["gc"]) == 0
    assert "checkpoints expired: 0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "variable", "message"),
    [
        (["run"], ("AUTO_RETRY_MAX_ATTEMPTS", "x"), "error: AUTO_RETRY_MAX_ATTEMPTS='x'"),
        (["run"], ("CHECKPOINT_RETENTION_HOURS", "-1"), "error: CHECKPOINT_RETENTION_HOURS="),
        (["run", "--day", "29/12/2025"], None, "error: day '29/12/2025': expected YYYY-MM-DD"),
        (["run", "--count", "0"], None, "error: count=0: expected a whole number ≥ 1"),
        (["show", "task_publish_20000101"], None, "error: no paper_pipeline task"),
        (["retry", "task_publish_20000101"], None, "error: no paper_pipeline task"),
    ],
)
def test_refusals_exit_with_status_2_and_say_what_to_fix(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    variable: tuple[str, str] | None,
    message: str,
) -> None:
    if variable is not None:
        monkeypatch.setenv(*variable)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_openai_variables_switch_to_a_real_provider_and_the_key_stays_hidden(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    real_provider: SimServer,
) -> None:
    key = "sk-live-abcdefghijklmnop1234"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", real_provider.openai_base_url)
    assert main(["run", "--day", DAY, "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["status"] == "succeeded"
    assert real_provider.stats()["routes"]["chat"]["requests"] == 3
    assert key not in out
    assert key not in (home / "regen.db").read_bytes().decode("latin-1")
    # The app's calls are counted where `regen stats` reads them: 3 analyses, 3 images.
    stats = subprocess.run(
        [str(REGEN), "--home", str(home), "stats", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (openai,) = json.loads(stats.stdout)["providers"]
    assert (openai["provider"], openai["attempts"]) == ("openai", 6)


def test_a_base_url_without_a_key_is_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert main(["run", "--day", DAY]) == 2
    assert "set OPENAI_API_KEY" in capsys.readouterr().err


def test_two_processes_starting_the_same_day_make_one_run(home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "examples.paper_pipeline", "run", "--day", DAY, "--json"]
    processes = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=45) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], results
    records = [json.loads(out[out.index("{") :]) for out, _ in results]
    assert records[0]["run_id"] == records[1]["run_id"]
    assert len(outbox(home)) == 1
    with PaperPipeline(Config.from_env()) as app:
        (run,) = app.engine.sync.list_runs()
        assert run.executions == 1


def regen_run(home: Path, day: dt.date | str) -> subprocess.CompletedProcess[str]:
    """``regen run`` of the flow for ``day``, without a ``--key``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    text = day.isoformat() if isinstance(day, dt.date) else day
    return subprocess.run(
        [str(REGEN), "--home", str(home), "run", FLOW, "-p", f"day={text}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_regen_run_of_the_flow_is_the_days_task_either_way_round(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    today = dt.date.today()
    done = regen_run(home, today)
    assert done.returncode == 0, done.stdout + done.stderr
    assert main(["show"]) == 0
    out = capsys.readouterr().out
    assert f"task_publish_{today:%Y%m%d}  succeeded  (run " in out
    # `run` of that day takes the same run for the day's task: it is not published again.
    assert main(["run"]) == 0
    assert "had already succeeded: nothing was run" in capsys.readouterr().err
    assert len(outbox(home)) == 1

    other = today - dt.timedelta(days=1)
    assert main(["run", "--day", other.isoformat()]) == 0
    again = regen_run(home, other)  # and the other way round
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(outbox(home)) == 2
    with PaperPipeline(Config.from_env()) as app:
        assert len(app.engine.sync.list_runs()) == 2


def test_regen_run_with_a_day_that_is_not_a_date_is_refused_before_any_run(home: Path) -> None:
    done = regen_run(home, "yesterday")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "day='yesterday': expected a date, YYYY-MM-DD" in done.stderr
    with PaperPipeline(Config.from_env()) as app:
        assert app.engine.sync.list_runs() == []


def test_plain_show_after_a_plain_run_shows_todays_task(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["show"]) == 0
    assert f"task_publish_{dt.date.today():%Y%m%d}  succeeded  (run {run_id}" in (
        capsys.readouterr().out
    )


def test_the_failure_recipe_says_so_when_the_day_already_succeeded(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--day", DAY, "--json"]) == 0
    capsys.readouterr()
    assert main(["run", "--day", DAY]) == 0
    assert f"{TASK} had already succeeded: nothing was run" in capsys.readouterr().err
    monkeypatch.setenv("PAPER_PIPELINE_FAIL_STEP", "render_images")
    assert main(["run", "--day", DAY]) == 2
    err = capsys.readouterr().err
    assert "PAPER_PIPELINE_FAIL_STEP=render_images has nothing to fail" in err
    assert f"{TASK} already succeeded" in err
    assert f"retry {TASK} --from render_images" in err
    assert len(outbox(home)) == 1


def test_clear_forgets_a_failed_tasks_checkpoints_and_the_next_run_starts_over(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAPER_PIPELINE_FAIL_STEP", "render_images")
    assert main(["run", "--day", DAY]) == 1
    assert main(["clear", DAY]) == 0
    assert f"{TASK}: checkpoints cleared" in capsys.readouterr().out
    assert main(["show", TASK, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["checkpoint"]["step_outputs"] == {}
    assert (record["retry_count"], record["manual_retry_count"]) == (0, 1)  # asked for by hand
    monkeypatch.delenv("PAPER_PIPELINE_FAIL_STEP")
    assert main(["run", "--day", DAY]) == 0
    assert "▶ fetch_papers" in capsys.readouterr().out  # from the top
    assert main(["clear", DAY]) == 2
    assert "succeeded: there is nothing to resume" in capsys.readouterr().err


def test_run_of_an_existing_day_with_other_params_says_the_task_keeps_its_own(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAPER_PIPELINE_FAIL_STEP", "render_images")
    assert main(["run", "--day", DAY, "--count", "2"]) == 1
    capsys.readouterr()
    monkeypatch.delenv("PAPER_PIPELINE_FAIL_STEP")

    assert main(["run", "--day", DAY, "--count", "5"]) == 0

    assert f"{TASK} exists: it goes on with its own --count 2" in capsys.readouterr().err
    assert main(["show", TASK, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["count"] == 2
    assert main(["run", "--day", DAY, "--count", "2"]) == 0  # the same: nothing to say
    assert "goes on with its own" not in capsys.readouterr().err


def test_clear_of_an_expired_task_forgets_it_and_the_day_runs_anew(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAPER_PIPELINE_FAIL_STEP", "render_images")
    assert main(["run", "--day", DAY]) == 1
    monkeypatch.delenv("PAPER_PIPELINE_FAIL_STEP")
    monkeypatch.setenv("CHECKPOINT_RETENTION_HOURS", "0")
    assert main(["gc"]) == 0
    capsys.readouterr()
    assert main(["run", "--day", DAY]) == 2
    assert f"`clear {TASK}` forgets it" in capsys.readouterr().err

    assert main(["clear", DAY]) == 0
    assert "the task is forgotten" in capsys.readouterr().out
    assert main(["run", "--day", DAY]) == 0
    assert "▶ fetch_papers" in capsys.readouterr().out
    assert len(outbox(home)) == 1
