"""What the flow's steps share — the image client, the data dir, the console — and how it is
built from the environment.

The image backend follows the environment, like the seed's app:

- ``IMAGE_PROVIDER=aliyun`` uses DashScope (``DASHSCOPE_API_KEY``, optionally
  ``DASHSCOPE_BASE_URL``); without a key it fails at once with the seed's 配置错误;
- ``IMAGE_PROVIDER=sim`` starts regen's simulator in this process (offline);
- no ``IMAGE_PROVIDER``: DashScope when ``DASHSCOPE_API_KEY`` (or ``DASHSCOPE_BASE_URL``) is
  set, otherwise the simulator, and the backend's description says it was chosen for that.

With DashScope, a second image provider's key (``OPENAI_API_KEY``, or the providers
``DASHSCOPE_FALLBACK`` names) makes it DashScope's fallback: see
:func:`images.fallback_from_env`. Offline, the simulator has none.

:func:`open_runtime` is the flow's ``resources``: ``regen run``, ``regen worker`` and a
take-over after a crash build the :class:`Runtime` with it, from the environment alone,
as the app's ``auto`` command does by default. The app's own command builds its Runtime
itself (with its console and options) and passes it to the engine instead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from examples.daily_news import images
from examples.daily_news.images import DEFAULT_BASE_URL, AliyunImageClient
from examples.daily_news.posts import DraftBox, PostStore
from regen import ConfigError, Policy

if TYPE_CHECKING:
    from regen.sim import SimServer

logger = logging.getLogger("examples.daily_news")

#: The key the offline simulator is called with (it accepts any non-empty key).
SIM_KEY = "sk-regen-sim-daily-news"
#: Where posts, drafts and logs go unless ``DAILY_NEWS_DATA_DIR`` (or ``--data-dir``) says.
DEFAULT_DATA_DIR = "data"
#: How long a simulated image task takes unless ``DAILY_NEWS_SIM_TASK_SECONDS`` says.
DEFAULT_SIM_TASK_SECONDS = 0.5

#: The values of ``IMAGE_PROVIDER`` ("": chosen by whether a DashScope key is set).
PROVIDERS = frozenset({"", "aliyun", "sim"})

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"", "0", "false", "f", "no", "n", "off"})


@dataclass
class Runtime:
    """What the steps need that is not a param: the image client, the data dir, the console.

    ``policy``: the image policy (default :func:`images.image_policy`, from the
    environment). ``retry_given_up``: a resumed run tries its given-up posts again instead
    of keeping their recorded give-up.
    """

    client: AliyunImageClient
    data_dir: Path
    console: Console | None = None
    policy: Policy = field(default_factory=images.image_policy)
    retry_given_up: bool = False

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.posts = PostStore(self.data_dir)
        self.drafts = DraftBox(self.data_dir)

    def say(self, text: str) -> None:
        """A line on the console, when there is one (the log file gets regen's own records)."""
        if self.console is not None:
            self.console.print(text, highlight=False)


@dataclass(frozen=True)
class SimSettings:
    """The in-process simulator: a seeded random fault profile and/or a script."""

    faults: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    script: str | None = None
    rules: Sequence[Mapping[str, Any]] = ()
    task_seconds: float = DEFAULT_SIM_TASK_SECONDS

    @property
    def injects(self) -> bool:
        """Whether any fault was asked for."""
        return bool(self.faults or self.script or self.rules)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimSettings:
        """The variables of ``auto``'s offline options: ``DAILY_NEWS_FAULTS``,
        ``DAILY_NEWS_SEED``, ``DAILY_NEWS_SCRIPT``, ``DAILY_NEWS_SIM_TASK_SECONDS``."""
        env = os.environ if environ is None else environ
        faults: dict[str, float] = {}
        if text := env.get("DAILY_NEWS_FAULTS", "").strip():
            from regen.sim import parse_profile  # noqa: PLC0415 - the 'sim' extra, when asked

            try:
                faults = parse_profile(text)
            except ValueError as exc:
                raise ConfigError(f"DAILY_NEWS_FAULTS={text!r}: {exc}") from None
        seed = env.get("DAILY_NEWS_SEED", "").strip() or "0"
        try:
            seed_value = int(seed)
        except ValueError:
            raise ConfigError(f"DAILY_NEWS_SEED={seed!r}: expected an integer") from None
        script = env.get("DAILY_NEWS_SCRIPT") or None
        if script is not None and not Path(script).is_file():
            raise ConfigError(f"DAILY_NEWS_SCRIPT={script!r}: no such file")
        seconds = env.get("DAILY_NEWS_SIM_TASK_SECONDS", "").strip()
        task_seconds = DEFAULT_SIM_TASK_SECONDS
        if seconds:
            try:
                task_seconds = float(seconds)
                if not math.isfinite(task_seconds) or task_seconds < 0:
                    raise ValueError(seconds)
            except ValueError:
                raise ConfigError(
                    f"DAILY_NEWS_SIM_TASK_SECONDS={seconds!r}: expected a number of seconds >= 0"
                ) from None
        return cls(faults=faults, seed=seed_value, script=script, task_seconds=task_seconds)


@dataclass
class Backend:
    """The image client to use, and the simulator behind it when offline."""

    client: AliyunImageClient
    simulator: SimServer | None
    description: str


@contextlib.contextmanager
def image_backend(
    environ: Mapping[str, str] | None = None, sim: SimSettings | None = None
) -> Iterator[Backend]:
    """The backend the environment asks for; an in-process simulator when offline."""
    env = os.environ if environ is None else environ
    settings = sim or SimSettings()
    provider = (env.get("IMAGE_PROVIDER") or "").strip().lower()
    if provider not in PROVIDERS:
        raise ConfigError(
            f"IMAGE_PROVIDER={provider!r}: this example generates images with DashScope; "
            "use IMAGE_PROVIDER=aliyun (with DASHSCOPE_API_KEY), or IMAGE_PROVIDER=sim "
            "(regen's offline simulator)"
        )
    key = env.get("DASHSCOPE_API_KEY") or None
    base_url = env.get("DASHSCOPE_BASE_URL") or None
    if provider == "aliyun" and not key:
        raise ConfigError(
            "配置错误：API Key 缺失 (api_key missing). IMAGE_PROVIDER=aliyun needs "
            "DASHSCOPE_API_KEY; set it, or unset IMAGE_PROVIDER to run offline on regen's "
            "simulator"
        )
    if provider == "aliyun" or (not provider and (key or base_url)):
        if settings.injects:
            raise ConfigError(
                "--faults/--script (DAILY_NEWS_FAULTS/DAILY_NEWS_SCRIPT) drive the offline "
                "simulator; set IMAGE_PROVIDER=sim to use it with them"
            )
        if not key:
            raise ConfigError(
                f"DASHSCOPE_BASE_URL={base_url} is set but DASHSCOPE_API_KEY is "
                "not (api_key missing); set both, or neither to run offline"
            )
        client = AliyunImageClient.from_env(env)
        where = f"DashScope at {client.base_url or DEFAULT_BASE_URL}"
        if client.fallback:
            where += ", while it is down: " + ", ".join(
                f"{f.name} at {f.base_url}" for f in client.fallback
            )
        yield Backend(client, None, where)
        return
    try:
        from regen.sim import run_simulator  # noqa: PLC0415 - optional: the 'sim' extra
    except ImportError as exc:  # pragma: no cover - the dev environment has the extra
        raise ConfigError(
            "running offline needs the simulator: pip install 'regen[sim]' "
            "(or set DASHSCOPE_API_KEY to use DashScope)"
        ) from exc
    with run_simulator(
        faults=dict(settings.faults),
        seed=settings.seed,
        script=settings.script,
        rules=list(settings.rules),
        task_seconds=settings.task_seconds,
    ) as server:
        interval = env.get("ALIYUN_IMAGE_POLL_INTERVAL_S")
        client = AliyunImageClient.from_env(
            env,
            base_url=server.dashscope_base_url,
            api_key=SIM_KEY,
            fallback=(),  # offline: no real provider stands in for the simulator
            **(
                {}
                if interval
                else {"poll_interval": min(1.0, max(settings.task_seconds / 4, 0.01))}
            ),
        )
        why = (
            "IMAGE_PROVIDER=sim"
            if provider
            else "no IMAGE_PROVIDER and no DASHSCOPE_API_KEY set; "
            "set IMAGE_PROVIDER=aliyun and DASHSCOPE_API_KEY for DashScope"
        )
        yield Backend(
            client, server, f"regen's built-in simulator at {server.url}, offline ({why})"
        )


def data_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """``DAILY_NEWS_DATA_DIR``, or ``data`` (relative to the current directory)."""
    env = os.environ if environ is None else environ
    return Path(env.get("DAILY_NEWS_DATA_DIR") or DEFAULT_DATA_DIR)


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name}={env[name]!r}: expected 1/0, true/false, yes/no or on/off")


@contextlib.asynccontextmanager
async def open_runtime(params: Mapping[str, Any]) -> AsyncIterator[Runtime]:
    """The flow's resources: the :class:`Runtime` the environment asks for.

    As ``auto`` does by default: the image backend of :func:`image_backend` (DashScope
    with ``DASHSCOPE_API_KEY``, otherwise a simulator started here, shaped by
    :meth:`SimSettings.from_env`), the ``ALIYUN_IMAGE_*`` policy, posts under
    ``DAILY_NEWS_DATA_DIR`` (``data``), given-up posts tried again on a resumed run when
    ``DAILY_NEWS_RETRY_FAILED=1``; no console. The run's ``params`` do not change it.
    The client is closed and the simulator stopped when the execution ends.
    """
    env = os.environ
    policy = images.image_policy(env)
    retry_given_up = _flag(env, "DAILY_NEWS_RETRY_FAILED")
    data_dir = data_dir_from_env(env)
    # Offline, the simulator starts on its own thread; it answers within milliseconds.
    with image_backend(env, SimSettings.from_env(env)) as backend:
        logger.info(
            "daily_news images: %s; posts under %s",
            backend.description,
            data_dir,
            extra={"backend": backend.description, "data_dir": str(data_dir)},
        )
        try:
            yield Runtime(backend.client, data_dir, policy=policy, retry_given_up=retry_given_up)
        finally:
            await backend.client.aclose()
