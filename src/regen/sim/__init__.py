"""A local simulator of AI providers (OpenAI, DashScope, a photo/video task API, a
payment API) that answers with real images and streamed text and injects the faults of
the fault catalogue of docs/simulator.md on demand. It imports nothing else from regen.

    from regen.sim import run_simulator

    with run_simulator() as sim:
        ...  # point clients at sim.openai_base_url / sim.dashscope_base_url
"""

from __future__ import annotations

from regen.sim._app import SimApp, create_app
from regen.sim._config import DEFAULT_MODELS, SimConfig, parse_duration, parse_keys, parse_profile
from regen.sim._faults import APPLIES, CARRIED, FAULTS, ROUTES, FaultSpec, parse_faults
from regen.sim._images import render_png
from regen.sim._script import load_script, parse_rules
from regen.sim._server import UnsupportedUvicorn, serve
from regen.sim._testing import SimServer, run_simulator

__all__ = [
    "APPLIES",
    "CARRIED",
    "DEFAULT_MODELS",
    "FAULTS",
    "ROUTES",
    "FaultSpec",
    "SimApp",
    "SimConfig",
    "SimServer",
    "UnsupportedUvicorn",
    "create_app",
    "load_script",
    "parse_duration",
    "parse_faults",
    "parse_keys",
    "parse_profile",
    "parse_rules",
    "render_png",
    "run_simulator",
    "serve",
]
