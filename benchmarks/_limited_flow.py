"""The flow ``regen worker`` processes execute in phase 2 of ``outage.py``: one map step of
images through the registry's image pipeline, under a rate limit every worker shares.

The registry comes from the providers file ``REGEN_PROVIDERS_FILE`` names (written by
``outage.py``: one provider, ``[limit] rps = 18``); its breakers and limits are kept in the
executing engine's store (``current_provider_state()``), so the workers on one database take
their requests from one token bucket.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from regen.engine import Flow, Param, StepContext, current_provider_state
from regen.providers import ImagePipeline, Registry
from regen.retry import Policy

#: Distinct prompts, as in phase 1: the simulator draws each once.
PROMPTS = 100
#: Items in flight per run (a worker executes several runs at once).
CONCURRENCY = 8


@contextlib.asynccontextmanager
async def open_pipeline(params: Mapping[str, Any]) -> AsyncIterator[ImagePipeline]:
    """The default provider's image pipeline, its limit shared through the engine's store."""
    async with Registry.load() as registry:
        shared = current_provider_state()
        if shared is not None:
            registry.use_state(shared)
        yield ImagePipeline(registry.get())


flow = Flow(
    "outage_limited",
    params={"batch": Param(int, help="the batch's number"), "items": Param(int, help="images")},
    resources=open_pipeline,
)


def prompts(ctx: StepContext) -> Any:
    batch, items = ctx.params["batch"], ctx.params["items"]
    return (f"news photo {(batch * items + i) % PROMPTS}" for i in range(items))


# One engine-level attempt per item: the pipeline retries the image itself.
@flow.map(items=prompts, concurrency=CONCURRENCY, policy=Policy(attempts=1, timeout=None))
async def illustrate(ctx: StepContext, prompt: str) -> dict[str, Any]:
    pipeline: ImagePipeline = ctx.resources
    result = await pipeline.run(prompt, size="256x256", response_format="b64_json")
    return {"provider": result.provider, "attempts": result.attempts}
