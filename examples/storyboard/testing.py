"""Helpers the seed's test example calls (``create_test_project``, ``create_test_storyboard``)
and one that points the app at a simulator.

They work on :func:`default_app` unless given an ``app``; the simulator's key is read
from ``$REGEN_SIM_API_KEY`` (the simulator accepts any non-empty key; a run executed
with the flow's own resources sends one of its own when the variable is not set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from examples.storyboard.app import StoryboardApp, default_app
from examples.storyboard.models import ModelProvider, Project, Storyboard
from examples.storyboard.resources import SIM_KEY_ENV

__all__ = [
    "DEMO_SCRIPT",
    "DEMO_STORYBOARDS",
    "SIM_KEY_ENV",
    "SIM_MODEL",
    "create_demo_project",
    "create_test_project",
    "create_test_storyboard",
    "use_simulator",
]

SIM_MODEL = "jimeng-4.0"


async def create_test_project(
    name: str = "测试项目",
    *,
    app: StoryboardApp | None = None,
    image_providers: Sequence[str] = (),
    storyboard_stage: str | None = "completed",
) -> Project:
    """A project whose ``storyboard`` stage is completed (or ``storyboard_stage``)."""
    records = (app or default_app()).records
    return records.create_project(
        name, image_providers=image_providers, storyboard_stage=storyboard_stage
    )


async def create_test_storyboard(
    project: Project | str,
    image_prompt: str | None = "月光下奔跑的白色小狐狸，电影感，广角",
    *,
    app: StoryboardApp | None = None,
    negative_prompt: str | None = None,
    custom_params: Mapping[str, Any] | None = None,
    sequence_number: int | None = None,
) -> Storyboard:
    """A storyboard at the end of the project."""
    records = (app or default_app()).records
    project_id = project if isinstance(project, str) else project.id
    return records.add_storyboard(
        project_id,
        image_prompt,
        sequence_number=sequence_number,
        negative_prompt=negative_prompt,
        custom_params=custom_params,
    )


def use_simulator(
    base_url: str,
    *,
    app: StoryboardApp | None = None,
    name: str = "sim",
    model: str = SIM_MODEL,
    is_default: bool = True,
) -> ModelProvider:
    """Declare a simulator (``sim.openai_base_url``) as a text-to-image provider, by default
    the system default."""
    records = (app or default_app()).records
    return records.add_provider(
        name, api_url=base_url, model_name=model, api_key_env=SIM_KEY_ENV, is_default=is_default
    )


#: A five-storyboard project whose images meet the faults of ``DEMO_SCRIPT``:
#: #1 is square (custom params), #2 is refused by the content filter, #3 meets a 500 once
#: (and has a negative prompt), #4 and #5 share a prompt (one generation for both).
DEMO_STORYBOARDS: tuple[dict[str, Any], ...] = (
    {
        "image_prompt": "清晨的竹林小径，薄雾，水墨风格",
        "custom_params": {"ratio": "1:1", "resolution": "1k"},
    },
    {"image_prompt": "被内容审核拦下的画面"},
    {"image_prompt": "雨夜街头的霓虹灯，赛博朋克", "negative_prompt": "文字，水印"},
    {"image_prompt": "海边的白色灯塔，黄昏"},
    {"image_prompt": "海边的白色灯塔，黄昏"},
)
#: Simulator script rules for ``DEMO_STORYBOARDS`` (each fault once, then answers normally).
DEMO_SCRIPT: tuple[dict[str, Any], ...] = (
    {"prompt": DEMO_STORYBOARDS[1]["image_prompt"], "steps": ["content_policy"]},
    {"prompt": DEMO_STORYBOARDS[2]["image_prompt"], "steps": ["server_error"]},
)


def create_demo_project(
    app: StoryboardApp | None = None, name: str = "灯塔短片"
) -> tuple[Project, list[Storyboard]]:
    """A project with ``DEMO_STORYBOARDS`` and its storyboard stage completed."""
    records = (app or default_app()).records
    project = records.create_project(name)
    storyboards = [
        records.add_storyboard(
            project.id,
            spec["image_prompt"],
            negative_prompt=spec.get("negative_prompt"),
            custom_params=spec.get("custom_params"),
        )
        for spec in DEMO_STORYBOARDS
    ]
    return project, storyboards
