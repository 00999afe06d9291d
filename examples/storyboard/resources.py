"""What a stage run's steps share (``ctx.resources``): the app's records, one connection
pool, and the environment the provider's key is read from.

Whichever process executes a run opens them from the run's params and the environment
(``regen run examples.storyboard.flow:flow``, ``regen worker``, a take-over after a crash):

- the records: ``<home>/storyboard.db``, ``home`` being the run's ``home`` param (the app
  sets it) or :func:`data_home` (``$STORYBOARD_HOME``, else ``$REGEN_HOME``, else ``./.regen``);
- the provider the project would use (its own first, then the system default): when it
  is a simulator — the simulator's default address (``http://127.0.0.1:8900/v1``), or a
  loopback address declared with ``testing.use_simulator`` (key variable
  ``REGEN_SIM_API_KEY``), as the demo's project is — and nothing listens there, a regen
  simulator is started on that address in this process for the execution; its key need
  not be set (the simulator accepts any);
- a :class:`~regen.providers.Transport` for every image request of the execution.

:class:`~examples.storyboard.app.StoryboardApp` passes its own instead (its records, its
pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import ChainMap
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from examples.storyboard.generation import ProviderInfo
from examples.storyboard.records import RECORDS_FILE, Records
from examples.storyboard.validation import ValidationError, resolve_provider
from regen.providers import MemoryState, SharedState, Transport
from regen.retry import ConfigError
from regen.store import home as regen_home

logger = logging.getLogger("examples.storyboard")

#: The simulator's default address (``regen sim``), where an in-process one may be started.
SIM_HOSTS = frozenset({"127.0.0.1", "localhost"})
SIM_PORT = 8900
#: The key variable of the providers ``testing.use_simulator`` declares.
SIM_KEY_ENV = "REGEN_SIM_API_KEY"
#: The key sent to a simulator when the provider's variable is not set.
LOCAL_SIM_KEY = "sk-sim-local"
_PROBE_TIMEOUT = 0.5


def data_home() -> Path:
    """``$STORYBOARD_HOME``, else regen's data directory (``$REGEN_HOME`` or ``./.regen``)."""
    chosen = os.environ.get("STORYBOARD_HOME")
    return Path(chosen).expanduser() if chosen else regen_home()


@dataclass(frozen=True, slots=True)
class StageResources:
    """``ctx.resources`` of a stage run.

    ``environ``: where providers' keys are read. ``provider_state``: the providers'
    circuit breakers, kept across the run's attempts (and, given the same one, runs).
    """

    records: Records
    transport: Transport
    environ: Mapping[str, str]
    provider_state: SharedState = field(default_factory=MemoryState)


@contextlib.asynccontextmanager
async def open_resources(params: Mapping[str, Any]) -> AsyncIterator[StageResources]:
    """The flow's own resources, from the run's params and the environment; closed after."""
    home = Path(params["home"]) if params.get("home") else data_home()
    records = Records.at(home / RECORDS_FILE)
    project_id = str(params["project_id"])
    with contextlib.ExitStack() as local:
        provider = _project_provider(records, project_id)
        if (
            provider is not None
            and _is_simulator(provider)
            and await _nothing_listens(provider.api_url)
        ):
            _start_local_simulator(local, provider.api_url)
        async with Transport() as transport:
            yield StageResources(records, transport, key_environ(records, project_id))


def key_environ(records: Records, project_id: str) -> Mapping[str, str]:
    """Where the project's provider keys are read: the process environment, with a stand-in
    key for a simulator provider whose variable is not set (the simulator takes any key)."""
    provider = _project_provider(records, project_id)
    if (
        provider is not None
        and _is_simulator(provider)
        and not os.environ.get(provider.api_key_env)
    ):
        return ChainMap({provider.api_key_env: LOCAL_SIM_KEY}, os.environ)
    return os.environ


def _project_provider(records: Records, project_id: str) -> ProviderInfo | None:
    """The provider the project would use now; ``None`` when validation will refuse it."""
    project = records.project(project_id)
    if project is None:
        return None
    try:
        return resolve_provider(records, project.image_providers)
    except ValidationError:
        return None


def _is_simulator(provider: ProviderInfo) -> bool:
    """Whether the provider is a simulator on this machine: the default address, or a
    loopback one declared as a simulator (its key variable)."""
    parts = urlsplit(provider.api_url)
    if parts.scheme != "http" or parts.hostname not in SIM_HOSTS or parts.port is None:
        return False
    return parts.port == SIM_PORT or provider.api_key_env == SIM_KEY_ENV


async def _nothing_listens(api_url: str) -> bool:
    """Whether nothing accepts connections at ``api_url``'s host and port."""
    parts = urlsplit(api_url)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port), _PROBE_TIMEOUT
        )
    except (OSError, TimeoutError):
        return True
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False


def _start_local_simulator(stack: contextlib.ExitStack, api_url: str) -> bool:
    """Start a regen simulator on ``api_url``'s port until ``stack`` closes; ``False``
    when another process bound the port since the probe (that one answers instead)."""
    try:
        from regen.sim import run_simulator  # noqa: PLC0415 - needs the [sim] extra
    except ImportError as exc:
        raise ConfigError(
            f"the image provider's base URL {api_url} is the simulator's, and nothing "
            "listens there: start `regen sim`, or pip install 'regen[sim]' to start one here"
        ) from exc
    try:
        server = stack.enter_context(run_simulator(port=urlsplit(api_url).port or SIM_PORT))
    except OSError:
        return False
    logger.info("storyboard: started a regen simulator at %s", server.openai_base_url)
    return True
