"""Seed 000 on regen: a daily-news batch whose image generation survives flaky APIs.

``python -m examples.daily_news auto --title "每日新闻" --count 3 --assets-glob "empty/pics/*"``
picks ``count*5`` news candidates and illustrates them in order with DashScope images
(offline: regen's simulator) until ``count`` posts have one; an image that fails three
times is given up, its post saved as ``failed``, and the next candidate backfills. See
README.md in this directory.
"""

from __future__ import annotations

from examples.daily_news.images import (
    AliyunImageClient,
    GeneratedPicture,
    ImageGenerationAbandoned,
    ImageOutcome,
    generate_aliyun_image,
    generate_image_with_retry,
    image_policy,
)

__all__ = [
    "AliyunImageClient",
    "GeneratedPicture",
    "ImageGenerationAbandoned",
    "ImageOutcome",
    "generate_aliyun_image",
    "generate_image_with_retry",
    "image_policy",
    "run_demo",
]


def __getattr__(name: str) -> object:
    # The demo pulls in the engine and the simulator: import it only when asked for.
    if name == "run_demo":
        from examples.daily_news.demo import run_demo  # noqa: PLC0415

        return run_demo
    raise AttributeError(f"module 'examples.daily_news' has no attribute {name!r}")
