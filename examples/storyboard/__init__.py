"""Seed 004 on regen: the text-to-image stage over every storyboard of a project.

A regen flow (validate → generate_images, 3 at a time → finish) with seed 004's progress
events on the wire, partial success, image records, re-running only what failed, the
result cache for identical prompts, a 60 s per-image timeout, provider chosen per project
then system-wide, and SSE views for FastAPI and Django. See README.md.
"""

from __future__ import annotations

from examples.storyboard.app import StoryboardApp, close_default_apps, default_app
from examples.storyboard.events import EVENT_TYPES, SSE_HEADERS, from_log, sse
from examples.storyboard.flow import CONCURRENCY, FLOW_NAME, IMAGE_POLICY, flow
from examples.storyboard.generation import DEFAULT_RATIO, DEFAULT_RESOLUTION
from examples.storyboard.models import (
    GeneratedImage,
    ModelProvider,
    PipelineContext,
    Project,
    ProjectStage,
    StageResult,
    Storyboard,
)
from examples.storyboard.processor import ProjectPipeline, Text2ImageStageProcessor
from examples.storyboard.records import Records
from examples.storyboard.resources import StageResources, data_home, open_resources
from examples.storyboard.validation import ValidationError

__all__ = [
    "CONCURRENCY",
    "DEFAULT_RATIO",
    "DEFAULT_RESOLUTION",
    "EVENT_TYPES",
    "FLOW_NAME",
    "IMAGE_POLICY",
    "SSE_HEADERS",
    "GeneratedImage",
    "ModelProvider",
    "PipelineContext",
    "Project",
    "ProjectPipeline",
    "ProjectStage",
    "Records",
    "StageResources",
    "StageResult",
    "Storyboard",
    "StoryboardApp",
    "Text2ImageStageProcessor",
    "ValidationError",
    "close_default_apps",
    "data_home",
    "default_app",
    "flow",
    "from_log",
    "open_resources",
    "sse",
]
