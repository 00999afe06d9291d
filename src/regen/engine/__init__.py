"""Durable execution: flows of checkpointed steps, map steps, streaming steps, runs that
survive crashes and are retried from where they failed.

Declare a :class:`Flow`, then run it with an :class:`Engine`::

    flow = Flow("digest", params={"topic": str})

    @flow.step()
    async def fetch(ctx): ...

    engine = Engine()
    run = await engine.run(flow, {"topic": "llm"})
"""

from __future__ import annotations

from regen.engine._context import StepContext
from regen.engine._detail import RunDetail
from regen.engine._engine import Engine, Started
from regen.engine._errors import EngineError, FlowError, FlowNotFound, ParamsError, RunExists
from regen.engine._flow import MAX_AUTO_RETRIES, MAX_RETRY_DELAY_S, Cache, Flow, StepSpec
from regen.engine._json import ArtifactRef, NotJSON
from regen.engine._loader import load_flow
from regen.engine._params import Param
from regen.engine._settings import Settings
from regen.engine._shared_state import StoreState, current_provider_state
from regen.engine._traceback import format_error
from regen.engine._worker import WorkerEvent
from regen.store import (
    DatabaseUnreachable,
    Event,
    EventType,
    InvalidTransition,
    Item,
    ItemStatus,
    LeaseLost,
    Run,
    RunNotFound,
    RunStatus,
    Step,
    StepStatus,
)

__all__ = [
    "MAX_AUTO_RETRIES",
    "MAX_RETRY_DELAY_S",
    "ArtifactRef",
    "Cache",
    "DatabaseUnreachable",
    "Engine",
    "EngineError",
    "Event",
    "EventType",
    "Flow",
    "FlowError",
    "FlowNotFound",
    "InvalidTransition",
    "Item",
    "ItemStatus",
    "LeaseLost",
    "NotJSON",
    "Param",
    "ParamsError",
    "Run",
    "RunDetail",
    "RunExists",
    "RunNotFound",
    "RunStatus",
    "Settings",
    "Started",
    "Step",
    "StepContext",
    "StepSpec",
    "StepStatus",
    "StoreState",
    "WorkerEvent",
    "current_provider_state",
    "format_error",
    "load_flow",
]
