"""The pipeline's command line: ``python -m examples.paper_pipeline run|retry|show|gc``.

    run   [--day DAY] [--count N] [--feed FILE]   run the day's task (one per day)
    retry [TASK] [--from STEP]                    resume from the failed step, or STEP
    show  [TASK] [--all]                          the task record (as data/tasks.json held it)
    clear [TASK]                                  forget a failed task's checkpoints
    gc                                            clean up expired checkpoints

TASK is a task id (``task_publish_20251229``), a run id or a day (default: today).
``--json`` prints records as JSON. Exit status: 0 succeeded, 1 the task failed, 2 the
command was refused (bad configuration, unknown task, a retry that is not allowed).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from examples.paper_pipeline.app import PaperPipeline, TaskNotFound
from examples.paper_pipeline.config import STEPS, Config
from examples.paper_pipeline.tasks import iso
from regen import RegenError
from regen.engine import Event, EventType, Run, RunStatus

_MARKS = {
    "succeeded": "✓",
    "failed": "✗",
    "running": "…",
    "pending": "·",
    "skipped": "-",
    "partial": "~",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.paper_pipeline",
        description="A daily paper digest on regen, checkpointed after every step.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the day's task (resumes it if it failed)")
    run.add_argument("--day", help="YYYY-MM-DD (default: today)")
    run.add_argument("--count", type=int, help="papers to feature (default 3)")
    run.add_argument(
        "--feed", help="a JSON feed file (default: $PAPER_PIPELINE_FEED or the built-in list)"
    )
    retry = commands.add_parser("retry", help="retry a task from its failed step or --from STEP")
    retry.add_argument("task", nargs="?", help="task id, run id or day (default: today)")
    retry.add_argument(
        "--from",
        dest="from_step",
        choices=STEPS,
        metavar="STEP",
        help=f"re-run this step and the later ones ({', '.join(STEPS)})",
    )
    show = commands.add_parser("show", help="print a task's record")
    show.add_argument("task", nargs="?", help="task id, run id or day (default: today)")
    show.add_argument("--all", action="store_true", help="every recent task")
    clear = commands.add_parser(
        "clear", help="forget a failed task's checkpoints: its next run starts from the top"
    )
    clear.add_argument("task", nargs="?", help="task id, run id or day (default: today)")
    commands.add_parser("gc", help="delete checkpoints past CHECKPOINT_RETENTION_HOURS")
    for sub in (run, retry, show, clear, commands.choices["gc"]):
        sub.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _progress(event: Event) -> None:
    data: dict[str, Any] = event.data
    text = None
    if event.type == EventType.STEP_STARTED:
        text = f"▶ {data['step']}"
    elif event.type == EventType.STEP_SUCCEEDED:
        text = f"✓ {data['step']}"
    elif event.type == EventType.STEP_FAILED:
        text = f"✗ {data['step']}: {(data.get('error') or {}).get('message', '')}"
    elif event.type == "image_generated":
        text = f"    image for {data['paper_id']} ({data['attempts']} attempt(s))"
    elif event.type == "published":
        text = f"    published {data['post_id']}" + (
            " (already published)" if data.get("duplicate") else ""
        )
    elif event.type == EventType.RUN_FAILED and data.get("retry_at"):
        text = (
            f"run failed; automatic retry {data['retry']} at {iso(data['retry_at'])} "
            "(AUTO_RETRY_DELAY_SECONDS)"
        )
    elif event.type == EventType.RUN_QUEUED and data.get("auto"):
        text = f"automatic retry {data['retry']}: from {data['from_step']}"
    if text is not None:
        print(text, flush=True)


def _summary(record: dict[str, Any]) -> str:
    lines = [
        f"{record['task_id']}  {record['status']}  (run {record['run_id']}, automatic "
        f"retries {record['retry_count']}/{record['max_retries']}, manual "
        f"{record['manual_retry_count']})"
    ]
    outputs = record["checkpoint"]["step_outputs"]
    for step in record["steps"]:
        mark = _MARKS.get(step["status"], "?")
        when = outputs.get(step["name"], {}).get("timestamp")
        extra = f"  checkpoint {when}" if when else ""
        if step["error"]:
            extra += f"  error: {step['error'].get('message', '')}"
        lines.append(f"  {mark} {step['name']:<15} {step['status']:<10}{extra}".rstrip())
    if record["process_lost"]:
        lines.append(
            "its process stopped (killed, or its machine lost): `run` of its day, or `retry "
            f"{record['task_id']}`, takes it over and resumes from its checkpoints"
        )
    if record["next_auto_retry_at"]:
        lines.append(f"automatic retry at {record['next_auto_retry_at']}")
    if record["resumable"]:
        lines.append(
            f"resumable from {record['failed_step'] or 'its next step'}: "
            f"python -m examples.paper_pipeline retry {record['task_id']}"
        )
    elif record["checkpoints_expired"]:
        lines.append("checkpoints expired (CHECKPOINT_RETENTION_HOURS): no longer resumable")
    return "\n".join(lines)


def _show(records: list[dict[str, Any]], as_json: bool, *, many: bool = False) -> None:
    if as_json:
        print(json.dumps(records if many else records[0], ensure_ascii=False, indent=2))
    else:
        print("\n\n".join(_summary(r) for r in records) or "no tasks yet")


async def _tell_kept_params(app: PaperPipeline, day: str | None, asked: dict[str, Any]) -> None:
    """Say so when the day's task exists with other params than those typed: a day has one
    task, its params fixed when it started (its checkpoints were made from them)."""
    typed = {name: value for name, value in asked.items() if value is not None}
    if not typed:
        return
    try:
        found = await app.find(day)
    except TaskNotFound:
        return
    kept = [
        f"--{name} {found.params.get(name)!r}"
        for name, value in typed.items()
        if found.params.get(name) != value
    ]
    if kept:
        print(
            f"{found.business_key or found.id} exists: it goes on with its own "
            f"{', '.join(kept)} (a day has one task, its params fixed when it started)",
            file=sys.stderr,
        )


async def _main(args: argparse.Namespace) -> int:
    config = Config.from_env()
    executes = args.command in ("run", "retry")
    async with PaperPipeline.open(config, execute=executes) as app:
        progress = None if args.json else _progress
        run: Run | None = None
        began = time.time()
        if args.command == "run":
            await _tell_kept_params(app, args.day, {"count": args.count, "feed": args.feed})
            count = 3 if args.count is None else args.count
            run = await app.run(args.day, count=count, feed=args.feed, progress=progress)
            if run.status is RunStatus.SUCCEEDED and (run.finished_at or began) < began:
                print(
                    f"{run.business_key or run.id} had already succeeded: nothing was run "
                    "(`retry TASK --from STEP` runs a step again)",
                    file=sys.stderr,
                )
        elif args.command == "retry":
            run = await app.retry(args.task, from_step=args.from_step, progress=progress)
        elif args.command == "clear":
            found = await app.find(args.task)
            name = found.business_key or found.id
            forgotten = await app.checkpoints.clear_checkpoint(name)
            day = found.params.get("day")
            if args.json:
                record = (
                    {"task_id": name, "run_id": found.id, "forgotten": True}
                    if forgotten
                    else await app.record(found.id)
                )
                print(json.dumps(record, ensure_ascii=False, indent=2))
            elif forgotten:
                print(
                    f"{name}: its checkpoints had expired, the task is forgotten; "
                    f"`run --day {day}` starts a new one from {STEPS[0]}"
                )
            else:
                print(
                    f"{name}: checkpoints cleared; its next run (`run --day "
                    f"{day}`, or a worker) starts from {STEPS[0]}"
                )
            return 0
        elif args.command == "gc":
            counts = await app.gc()
            if args.json:
                print(json.dumps(dataclasses.asdict(counts)))
            else:
                print(
                    f"checkpoints expired: {counts.checkpoints_expired}, runs deleted: "
                    f"{counts.runs_deleted}, artifacts deleted: {counts.artifacts_deleted}"
                )
            return 0
        if args.command == "show" and args.all:
            _show(await app.records(), args.json, many=True)
            return 0
        record = await app.record(run.id if run is not None else args.task)
        if not args.json and run is not None:
            print()
        _show([record], args.json)
        return 1 if record["status"] == RunStatus.FAILED else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except RegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the task is left resumable (retry it)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
