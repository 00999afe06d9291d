"""``python -m examples.novel serve``: seed 001's API on uvicorn.

Chapters come from the OpenAI-compatible API of ``NOVEL_API_KEY`` (``NOVEL_BASE_URL``,
``NOVEL_MODEL``) or ``OPENAI_API_KEY``; without a key, from regen's simulator, started
here for as long as the server runs. ``--home`` (default ``$NOVEL_HOME``, else
``$REGEN_HOME``, else ``./.regen``) keeps the novels and the runs across restarts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from examples.novel.flow import SIM_CHUNK_DELAY, SIM_KEY, chat_config, data_home


@contextlib.contextmanager
def chat_backend(chunk_delay: float) -> Iterator[str]:
    """The environment's chat API, or a simulator started here (named in the environment,
    so the flow's resources find it)."""
    config = chat_config()
    if config is not None:
        yield f"{config.base_url or 'https://api.openai.com/v1'} ({config.model})"
        return
    from regen.sim import run_simulator  # noqa: PLC0415 - the [sim] extra, offline only

    with run_simulator(chunk_delay=chunk_delay) as sim:
        os.environ.update(
            {"NOVEL_BASE_URL": sim.openai_base_url, "NOVEL_API_KEY": SIM_KEY, "NOVEL_MODEL": "sim"}
        )
        try:
            yield f"regen's simulator at {sim.openai_base_url} (no NOVEL_API_KEY set)"
        finally:
            for name in ("NOVEL_BASE_URL", "NOVEL_API_KEY", "NOVEL_MODEL"):
                os.environ.pop(name, None)


def serve(home: Path, host: str, port: int, chunk_delay: float) -> int:
    import uvicorn  # noqa: PLC0415 - needs the [server] extra

    from examples.novel.web import create_app  # noqa: PLC0415 - FastAPI: the [server] extra

    sock = socket.create_server((host, port))
    bound = sock.getsockname()[1]
    with chat_backend(chunk_delay) as described:
        print(f"chapters from {described}; data in {home}", flush=True)
        print(f"serving on http://{host}:{bound}", flush=True)
        config = uvicorn.Config(create_app(home), log_level="info", lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.novel", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    web = commands.add_parser("serve", help="serve the API")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8001, help="0: any free port (printed)")
    web.add_argument("--home", type=Path, help="data directory (default $NOVEL_HOME)")
    web.add_argument(
        "--chunk-delay",
        type=float,
        default=SIM_CHUNK_DELAY,
        help="the simulator's seconds between streamed words (offline only)",
    )
    args = parser.parse_args(argv)
    return serve(args.home or data_home(), args.host, args.port, args.chunk_delay)


if __name__ == "__main__":
    sys.exit(main())
