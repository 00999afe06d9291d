"""Seed 003 on regen: a daily paper digest whose five steps each leave a checkpoint.

``fetch_papers → openai_analyze → render_images → build_payload → publish_mcp``: a run
that fails at ``render_images`` keeps the papers and the analyses; a retry (automatic,
3 × 30 s by default, or by hand, from the failed step or any named one) runs only what
is left; one run per day whoever starts it; checkpoints kept 24 h. See README.md, and
``python -m examples.paper_pipeline --help``; the flow also runs without the app
(``regen run examples.paper_pipeline.pipeline:flow -p day=YYYY-MM-DD``, ``regen worker``).
"""

from __future__ import annotations

from examples.paper_pipeline.app import (
    NothingToFail,
    PaperPipeline,
    TaskExpired,
    TaskNotFound,
    parse_day,
)
from examples.paper_pipeline.config import STEPS, Config
from examples.paper_pipeline.outbox import Outbox, Published
from examples.paper_pipeline.papers import BUILT_IN, load_feed, papers_for
from examples.paper_pipeline.pipeline import flow, image_prompt, task_id
from examples.paper_pipeline.resources import InjectedFailure, Resources, open_resources
from examples.paper_pipeline.tasks import (
    CheckpointManager,
    ClearRefused,
    step_outputs,
    task_record,
)

__all__ = [
    "BUILT_IN",
    "STEPS",
    "CheckpointManager",
    "ClearRefused",
    "Config",
    "InjectedFailure",
    "NothingToFail",
    "Outbox",
    "PaperPipeline",
    "Published",
    "Resources",
    "TaskExpired",
    "TaskNotFound",
    "flow",
    "image_prompt",
    "load_feed",
    "open_resources",
    "papers_for",
    "parse_day",
    "step_outputs",
    "task_id",
    "task_record",
]
