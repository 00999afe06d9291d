"""``run_simulator``: a simulator on 127.0.0.1 in a background thread, for tests.

with run_simulator(task_seconds=0.2) as sim:
    client = OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    ...
    assert sim.stats()["prompts"]["a cat"]["produced"] == 1
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from regen.sim._app import SimApp, create_app
from regen.sim._config import SimConfig
from regen.sim._script import parse_rules
from regen.sim._server import Runner, bind_socket, check_uvicorn, loop_factory

_T = TypeVar("_T")
_START_TIMEOUT = 10.0


class SimServer:
    """A running simulator: its URLs, and its stats, reset and script from this thread."""

    def __init__(self, app: SimApp, runner: Runner, host: str, port: int) -> None:
        self.app = app
        self.config = app.config
        self._runner = runner
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.openai_base_url = f"{self.url}/v1"
        self.compatible_base_url = f"{self.url}/compatible-mode/v1"
        self.dashscope_base_url = f"{self.url}/api/v1"
        self.photo_base_url = f"{self.url}/photo/v1"
        self.pay_base_url = f"{self.url}/v3/pay"

    def __repr__(self) -> str:
        return f"<SimServer {self.url}>"

    def _call(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` on the server's loop (where the state lives) and wait for it."""
        loop = self._runner.loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the simulator is not running")
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:  # handed to the caller's thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=5)

    def stats(self) -> dict[str, Any]:
        """The same JSON as ``GET /_sim/stats``."""
        return self._call(self.app.state.snapshot)

    def reset(self) -> None:
        """Forget stats, tasks, payments, script progress and runtime script rules."""
        self._call(self.app.state.reset)

    def outage(self, seconds: float, *, after: int | None = None) -> None:
        """Go down for ``seconds`` (every API request answered 503): now, or from the
        ``after``-th request counted from now (as ``POST /_sim/outage``)."""
        outage = self.app.state.outage
        if after is None:
            self._call(lambda: outage.start(seconds))
        else:
            self._call(lambda: outage.configure(after, seconds))

    def recover(self) -> None:
        """End any outage now (as ``DELETE /_sim/outage``)."""
        self._call(self.app.state.outage.stop)

    def limit(self, rps: float | None, burst: int | None = None) -> None:
        """Set the per-second request limit (``None``: none), as ``POST /_sim/limit``."""
        self._call(lambda: self.app.state.per_second.configure(rps, burst))

    def script(self, *rules: Mapping[str, Any], replace: bool = False) -> None:
        """Add script rules (the format of ``POST /_sim/script``); ``replace`` drops older ones."""
        parsed = parse_rules(list(rules))
        self._call(lambda: self.app.state.script.add(parsed, replace=replace))


@contextlib.contextmanager
def run_simulator(config: SimConfig | None = None, **options: Any) -> Iterator[SimServer]:
    """Start a simulator on 127.0.0.1 (a free port) in a thread; stop it on exit.

    Pass a ``SimConfig`` or its fields as keywords (``faults={"hang": 0.1}``, ``seed=7``,
    ``task_seconds=0.2``, ...). ``host`` and ``port`` default to ``127.0.0.1`` and ``0``.
    """
    if config is None:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        config = SimConfig(**options)
    elif options:
        raise TypeError("pass either a SimConfig or its fields as keywords, not both")
    check_uvicorn()
    app = create_app(config)
    sock = bind_socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    runner = Runner(app, sock)
    failure: list[BaseException] = []

    def main() -> None:
        try:
            with asyncio.Runner(loop_factory=loop_factory()) as loop_runner:
                loop_runner.run(runner.serve())
        except BaseException as exc:  # reported to the starting thread
            failure.append(exc)
            runner.started.set()

    thread = threading.Thread(target=main, name=f"regen-sim-{port}", daemon=True)
    thread.start()
    try:
        if not runner.started.wait(_START_TIMEOUT) or failure:
            raise RuntimeError("the simulator did not start") from (failure[0] if failure else None)
        yield SimServer(app, runner, "[" + host + "]" if ":" in host else host, port)
    finally:
        runner.stop()
        thread.join(timeout=10)
        sock.close()
