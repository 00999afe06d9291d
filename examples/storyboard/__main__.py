"""``python -m examples.storyboard demo|serve|project``: the stage on the simulator, or on your
gateway; ``project`` makes a project for ``regen run examples.storyboard.flow:flow``.

With ``STORYBOARD_IMAGE_BASE_URL`` (e.g. ``http://localhost:5100/v1``) and
``STORYBOARD_IMAGE_API_KEY`` set (``STORYBOARD_IMAGE_MODEL`` defaults to ``jimeng-4.0``),
images come from that OpenAI-compatible gateway; otherwise from a simulator started here,
scripted with the demo's faults (a content-policy refusal, a 500 once). Without
``--home``, ``demo`` and ``serve`` work in a temporary directory removed when they end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from examples.storyboard.app import StoryboardApp
from examples.storyboard.processor import Text2ImageStageProcessor
from examples.storyboard.resources import SIM_PORT
from examples.storyboard.testing import DEMO_SCRIPT, SIM_KEY_ENV, create_demo_project, use_simulator

GATEWAY_URL_ENV = "STORYBOARD_IMAGE_BASE_URL"
GATEWAY_KEY_ENV = "STORYBOARD_IMAGE_API_KEY"
GATEWAY_MODEL_ENV = "STORYBOARD_IMAGE_MODEL"


@contextlib.contextmanager
def provider(app: StoryboardApp) -> Iterator[str]:
    """Make the gateway of the environment, or a simulator, the system default provider."""
    gateway = os.environ.get(GATEWAY_URL_ENV)
    if gateway:
        model = os.environ.get(GATEWAY_MODEL_ENV) or "jimeng-4.0"
        app.records.add_provider(
            "gateway",
            api_url=gateway,
            model_name=model,
            api_key_env=GATEWAY_KEY_ENV,
            is_default=True,
        )
        yield f"gateway {gateway} ({model})"
        return
    from regen.sim import run_simulator  # noqa: PLC0415 - needs the [sim] extra

    os.environ.setdefault(SIM_KEY_ENV, "sk-sim-demo")
    with run_simulator(rules=list(DEMO_SCRIPT)) as sim:
        use_simulator(sim.openai_base_url, app=app)
        yield f"simulator {sim.openai_base_url} (jimeng-4.0, demo faults)"


def show(event: dict[str, Any]) -> str:
    """One event as the seed's example prints it."""
    kind = event["type"]
    if kind == "progress":
        return f"进度: {event['current']}/{event['total']}  {event['message']}"
    if kind == "image_generated":
        image = event["image"]
        return f"图片已生成: {image['url']} ({image['width']}x{image['height']})"
    if kind == "done":
        return f"完成: {event['message']} {json.dumps(event['data'], ensure_ascii=False)}"
    if kind == "error":
        return f"错误: {event['error']}"
    if kind == "stage_update":
        return f"阶段: {event['stage']['stage_type']} → {event['stage']['status']}"
    return f"{'警告' if kind == 'warning' else '信息'}: {event['message']}"


async def demo(home: Path, as_json: bool) -> int:
    app = StoryboardApp(home)
    try:
        with provider(app) as described:
            project, _ = create_demo_project(app)
            if not as_json:
                print(f"数据目录 {home}；提供商 {described}；项目 {project.id}")
            processor = Text2ImageStageProcessor(app)
            async for event in processor.process_stream(project.id):
                print(json.dumps(event, ensure_ascii=False) if as_json else show(event))
            await app.wait_idle()
            (run,) = await app.engine.list_runs(limit=1)
            result = await processor.result(run.id)
            summary = {
                "project_id": project.id,
                "run_id": run.id,
                "success": result.success,
                "status": result.status,
                "data": result.data,
                "error": result.error,
                "failed_storyboard_ids": processor.failed_storyboard_ids(project.id),
            }
            print(
                json.dumps({"result": summary}, ensure_ascii=False)
                if as_json
                else f"StageResult(success={result.success}, status={result.status}, "
                f"data={json.dumps(result.data, ensure_ascii=False)})"
            )
            return 0 if result.success else 1
    finally:
        app.close()


def create_project(home: Path) -> int:
    """The demo's project on ``home``, its images from the simulator's default address
    (``regen run`` starts a simulator there when none runs); prints the project's id."""
    app = StoryboardApp(home)
    try:
        use_simulator(f"http://127.0.0.1:{SIM_PORT}/v1", app=app)
        project, _ = create_demo_project(app)
    finally:
        app.close()
    print(project.id)
    return 0


@contextlib.contextmanager
def data_dir(chosen: Path | None) -> Iterator[Path]:
    """``chosen``, or a temporary directory removed on the way out."""
    if chosen is not None:
        yield chosen
        return
    with tempfile.TemporaryDirectory(prefix="storyboard-") as temporary:
        yield Path(temporary)


def _django_app() -> Any:
    import django  # noqa: PLC0415 - only `serve --framework django` needs Django
    from django.conf import settings  # noqa: PLC0415
    from django.core.asgi import get_asgi_application  # noqa: PLC0415

    settings.configure(
        DEBUG=False,
        SECRET_KEY="storyboard-example",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="examples.storyboard.django_views",
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()
    return get_asgi_application()


def serve(home: Path, framework: str, host: str, port: int) -> int:
    import uvicorn  # noqa: PLC0415 - needs the [server] extra

    os.environ["STORYBOARD_HOME"] = str(home)  # the views' default app
    from examples.storyboard.app import close_default_apps, default_app  # noqa: PLC0415

    app = default_app()
    try:
        with provider(app) as described:
            project, _ = create_demo_project(app)
            if framework == "django":
                asgi = _django_app()
            else:
                from examples.storyboard.fastapi_app import create_app  # noqa: PLC0415

                asgi = create_app()
            print(
                f"提供商 {described}\n试试: curl -N "
                f"http://{host}:{port}/projects/{project.id}/images/stream"
            )
            # uvicorn stops on SIGTERM, then raises it again: as an exit, not a kill, so
            # the records are closed and a temporary data directory removed.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
            uvicorn.run(asgi, host=host, port=port, lifespan="off", log_level="info")
    finally:
        close_default_apps()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.storyboard", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="generate a five-storyboard project's images")
    run.add_argument(
        "--home", type=Path, help="data directory (default: a temporary one, removed after)"
    )
    run.add_argument("--json", action="store_true", help="events and result as JSON lines")
    web = commands.add_parser("serve", help="serve the SSE views (FastAPI or Django)")
    web.add_argument("--framework", choices=("fastapi", "django"), default="fastapi")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8004)
    web.add_argument(
        "--home", type=Path, help="data directory (default: a temporary one, removed after)"
    )
    make = commands.add_parser(
        "project", help="create the demo's project for `regen run`; prints its id"
    )
    make.add_argument(
        "--home", type=Path, required=True, help="data directory (regen run's --home too)"
    )
    args = parser.parse_args(argv)
    if args.command == "project":
        return create_project(args.home)
    with data_dir(args.home) as home:
        if args.command == "demo":
            return asyncio.run(demo(home, args.json))
        return serve(home, args.framework, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
