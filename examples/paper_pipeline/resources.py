"""What the pipeline's steps talk to: the OpenAI-compatible provider and the outbox.

Chosen from the environment, in whichever process executes a run (the app, ``regen run``,
``regen worker``): the real provider when ``OPENAI_API_KEY`` (or ``OPENAI_BASE_URL``) is
set, else a regen simulator started in this process for as long as the execution lasts.
The outbox is ``$REGEN_HOME/paper_pipeline/outbox.json`` (default ``./.regen``). Keys
stay in the provider: nothing here is stored with the run. The real provider's circuit
breaker, rate limit and call counts (``regen stats``) are kept in the engine's store,
shared by every worker on it, whether the app or a worker executes the run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from examples.paper_pipeline.config import Config
from examples.paper_pipeline.outbox import Outbox
from regen import Policy
from regen.engine import current_provider_state
from regen.providers import OpenAIProvider, Registry, SharedState
from regen.sim import run_simulator

#: Chat calls against the simulator: a few quick attempts.
SIM_CHAT_POLICY = Policy(attempts=3, timeout=30.0, wait=0.5, max_wait=5.0)
#: Image generation + download, retried as one unit per image.
SIM_IMAGE_POLICY = Policy(
    attempts=3, timeout=60.0, wait=1.0, max_wait=10.0, phases={"download": 30.0}
)
_SIM_KEY = "sk-sim-paper-pipeline"


class InjectedFailure(RuntimeError):
    """The failure ``PAPER_PIPELINE_FAIL_STEP`` asks for (a demo and test switch)."""


@dataclass(frozen=True, slots=True)
class Resources:
    """What the steps of one execution talk to (their ``ctx.resources``)."""

    provider: OpenAIProvider | None
    outbox: Outbox
    image_policy: Policy | None = None
    fail_step: tuple[str, str] | None = None

    def chat_provider(self) -> OpenAIProvider:
        """The provider, or a clear error for an app opened without one."""
        if self.provider is None:
            raise RuntimeError(
                "this PaperPipeline was opened without a provider (read-only); "
                "open it with one to execute runs"
            )
        return self.provider

    def inject(self, step: str, when: str) -> None:
        """Fail here if ``PAPER_PIPELINE_FAIL_STEP`` names this step and moment."""
        if self.fail_step == (step, when):
            raise InjectedFailure(
                f"PAPER_PIPELINE_FAIL_STEP={step}"
                f"{':after' if when == 'after' else ''}: injected failure "
                f"{'after' if when == 'after' else 'in'} {step}"
            )


def outbox_for(config: Config) -> Outbox:
    """The app's outbox under its data directory."""
    return Outbox(config.home / "paper_pipeline" / "outbox.json")


@contextlib.asynccontextmanager
async def open_resources(
    config: Config | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    state: SharedState | None = None,
) -> AsyncIterator[Resources]:
    """The provider the environment configures (a simulator when none is), with the
    outbox of ``config``; the provider's clients are closed, and the simulator stopped,
    on exit. A base URL without a key is refused (:class:`regen.ConfigError`). The real
    provider keeps its breaker, rate limit and call counts in ``state`` (the app gives
    its engine's), else, opened for a run, in the run's engine's store."""
    env = os.environ if environ is None else environ
    chosen = config or Config.from_env(env)
    outbox = outbox_for(chosen)
    async with Registry.from_env(env) as registry:
        if "openai" in registry:
            shared = state or current_provider_state()
            if shared is not None:  # one breaker, limit and count for every worker
                registry.use_state(shared)
            yield Resources(registry.openai("openai"), outbox, None, chosen.fail_step)
            return
    with run_simulator() as sim:
        async with OpenAIProvider(
            sim.openai_base_url, _SIM_KEY, name="sim", policy=SIM_CHAT_POLICY
        ) as provider:
            yield Resources(provider, outbox, SIM_IMAGE_POLICY, chosen.fail_step)


def flow_resources(params: Mapping[str, Any]) -> contextlib.AbstractAsyncContextManager[Resources]:
    """The flow's ``resources``: :func:`open_resources` from this process's environment,
    for a run executed without the app (``regen run``, ``regen worker``)."""
    return open_resources()
