"""The flow ``regen demo`` runs: a small daily-news batch against the simulator.

Three illustrated posts are wanted from fifteen news candidates. Each candidate's image is a
DashScope-style task (submit, poll) plus a download, one attempt, retried per item; the
simulator is scripted so every behaviour shows once (see :data:`SCRIPT`). A last step
"publishes" the posts through a chat call to a second simulator, ``backup``, that fails the
first time (:data:`BACKUP_SCRIPT`), so the run fails at that step and the demo resumes it
from there, keeping every image.

The image provider ``sim`` is declared with ``backup`` (OpenAI-style) as its fallback: when
``sim`` goes down, its circuit breaker opens after :data:`BREAKER_FAILURES` failed calls
and ``backup`` makes the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regen.engine import Flow, Param, StepContext
from regen.providers import (
    BreakerSettings,
    DashScopeProvider,
    OpenAIProvider,
    Polling,
    ProviderConfig,
    Registry,
    Secret,
    download_image,
)
from regen.retry import Policy

HEADLINES = (
    "台风过境上海，地铁恢复运行",
    "杭州亚运场馆向市民开放",
    "Quantum chip sets a new record",
    "成都大熊猫基地迎来双胞胎",
    "Rail link opens across the bay",
    "西湖龙井开采季提前到来",
    "A comet visible to the naked eye",
    "深圳无人机灯光秀创纪录",
    "Old harbour turned into a park",
    "北京胡同里的咖啡新店",
    "Marathon runners brave the rain",
    "黄山云海奇观再现",
    "Library opens its archive online",
    "重庆轻轨穿楼成网红打卡点",
    "Night market returns downtown",
)

#: The simulator's script: by candidate prompt, what its requests meet.
SCRIPT: tuple[dict[str, Any], ...] = (
    # 1st candidate: its first task submission hangs → a timeout, retried, then an image.
    {"prompt_contains": HEADLINES[0], "route": "dashscope_submit", "steps": ["hang", "ok"]},
    # 2nd: three downloads are XML error pages, not images → given up after three attempts.
    {
        "prompt_contains": HEADLINES[1],
        "route": "file",
        "steps": ["fake_image", "fake_image", "fake_image"],
    },
    # 3rd: a 429 asking for a 1 s wait → waits, then an image.
    {"prompt_contains": HEADLINES[2], "route": "dashscope_submit", "steps": ["rate_limit:1"]},
)
#: The second simulator's script (``backup``: chat, and images while ``sim`` is down): the
#: publishing call fails once, so the run fails at its last step, then resumes there.
BACKUP_SCRIPT: tuple[dict[str, Any], ...] = (
    {"prompt_contains": "publish", "route": "chat", "steps": ["server_error"]},
)

ITEM_POLICY = Policy(attempts=3, timeout=1.5, wait=0.2, multiplier=1, max_wait=0.2)
#: The image providers' names: the simulator the batch uses, and its fallback.
PRIMARY, FALLBACK = "sim", "backup"
#: Failed calls in a row that open ``sim``'s circuit breaker (a short demo: regen's default is 5).
BREAKER_FAILURES = 3
_KEY = "sk-demo-0000000000"


@dataclass(frozen=True, slots=True)
class Services:
    """The providers the demo's steps call, as ``ctx.resources`` (never stored: keys).

    ``registry`` declares ``images`` (``sim``) with ``backup`` as its fallback, and
    ``chat`` (``backup``); it keeps their circuit breakers and counters."""

    images: DashScopeProvider
    chat: OpenAIProvider
    registry: Registry

    async def aclose(self) -> None:
        """Close every provider's connections."""
        await self.registry.aclose()


flow = Flow(
    "regen-demo",
    params={"count": Param(int, default=3, help="posts wanted")},
    description="A daily-news batch: give up on an image after 3 attempts, backfill, publish.",
)


@flow.step()
async def candidates(ctx: StepContext) -> list[str]:
    """Five candidates per post wanted, in order."""
    wanted = ctx.params["count"] * 5
    return [f"新闻配图: {HEADLINES[i % len(HEADLINES)]}" for i in range(wanted)]


@flow.map(items="candidates", concurrency=2, quota="params.count", policy=ITEM_POLICY)
async def illustrate(ctx: StepContext, prompt: str) -> dict[str, Any]:
    """One attempt: generate the image (task + polls), download it, store it."""
    provider: DashScopeProvider = ctx.resources.images
    generated = await provider.generate_once(prompt)
    url = generated[0].url
    assert url is not None  # DashScope answers with URLs
    image = await download_image(url, transport=provider.transport, timeout=1.0)
    return {
        "prompt": prompt,
        "image": ctx.artifacts.put(image.data).to_dict(),
        "provider": generated[0].provider,  # sim, or backup while sim is down
    }


@flow.step()
async def publish(ctx: StepContext) -> dict[str, Any]:
    """Publish the illustrated posts (a chat call standing in for the platform's API)."""
    posts = [item.output async for item in ctx.items("illustrate")]
    reply = await ctx.resources.chat.complete(f"publish {len(posts)} posts")
    return {"published": len(posts), "receipt": reply[:40]}


def make_services(dashscope_base_url: str, backup_base_url: str) -> Services:
    """Providers pointed at the simulators, with short polls for a demo: images from
    ``sim`` (DashScope-style) with ``backup`` (OpenAI-style) as its fallback, chat from
    ``backup``."""
    polling = Polling(interval=0.05, max_interval=0.1, deadline=1.0, error_wait=0.1)
    registry = Registry(
        [
            ProviderConfig(
                name=PRIMARY,
                kind="dashscope",
                base_url=dashscope_base_url,
                api_key=Secret(_KEY),
                polling=polling,
                breaker=BreakerSettings(failures=BREAKER_FAILURES),
                fallback=(FALLBACK,),
            ),
            ProviderConfig(
                name=FALLBACK,
                kind="openai",
                base_url=backup_base_url,
                api_key=Secret(_KEY),
                image_model="dall-e-3",
                policy=Policy(attempts=1, timeout=2),
            ),
        ],
        default=PRIMARY,
    )
    return Services(
        images=registry.dashscope(PRIMARY),
        chat=registry.openai(FALLBACK),
        registry=registry,
    )
