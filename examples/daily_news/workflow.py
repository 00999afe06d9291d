"""The daily-news batch as a regen flow (the seed's ``src/workflow/create_post.py``).

::

    pick_candidates   step   count*5 news candidates, always the same for a title and date
    illustrate        map    over the candidates, in order, quota = count: one post each,
                             its image by generate_image_with_retry (ALIYUN_IMAGE_* policy);
                             a give-up saves the post as failed and the next candidate
                             backfills
    save_draft        map    over the illustrated posts only: the 小红书 draft, saved once
                             per idempotency key

Every finished item is checkpointed in regen's store before the next starts; the app's
``auto`` command keys the run by title and date, so running it again resumes the same run.

The steps find the image client, the data dir and the console in ``ctx.resources``, a
:class:`~examples.daily_news.runtime.Runtime`: the app passes its own, and any other process
that executes the run (``regen run examples.daily_news.workflow:flow``, ``regen worker``, a
take-over after a crash) builds one from the environment with
:func:`~examples.daily_news.runtime.open_runtime`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from examples.daily_news import images, posts
from examples.daily_news.images import (
    ImageGenerationAbandoned,
    ImageOutcome,
    generate_image_with_retry,
)
from examples.daily_news.news import NewsCandidate, find_assets, pick_candidates
from examples.daily_news.runtime import Runtime, open_runtime
from regen import Attempt, ConfigError, Kind, Policy
from regen.engine import Flow, Param, StepContext
from regen.providers import redact_url

logger = logging.getLogger("examples.daily_news")

FLOW_NAME = "daily_news"

#: The map steps' own policy: one engine-level attempt per item, because the item's image
#: is already retried inside it (generate_image_with_retry, the seed's retry wrapper).
ONCE = Policy(attempts=1, timeout=None)
#: The seed's fail-at-once kinds (missing key, 401/403, bad parameters): the set-up, not the
#: weather. A later execution of the run (after the key or setting was fixed) tries a post
#: given up on one of them again, instead of keeping its give-up.
SETUP_KINDS = frozenset({Kind.CONFIG, Kind.AUTH, Kind.BAD_REQUEST})
#: Saving a draft: a local write here; a real draft API would be retried like this.
DRAFT_POLICY = Policy(attempts=3, timeout=30.0, wait=0.5, max_wait=2.0)


flow = Flow(
    FLOW_NAME,
    params={
        "title": Param(str, default="每日新闻", help="the batch's title"),
        "count": Param(int, default=3, help="posts wanted"),
        "date": Param(str, help="the batch's date, YYYY-MM-DD"),
        "assets_glob": Param(str, default="", help="local pictures to attach (glob)"),
    },
    description="Daily news posts illustrated by DashScope images; give-ups are backfilled.",
    resources=open_runtime,
)


# --- step 1: candidates -------------------------------------------------------------------


@flow.step(name="pick_candidates")
async def pick(ctx: StepContext) -> list[dict[str, Any]]:
    """``count * 5`` candidates, in the order they will be tried; post ids unique to this run."""
    params = ctx.params
    assets = find_assets(params["assets_glob"])
    picked = pick_candidates(
        params["title"], params["date"], params["count"], assets, batch=ctx.run_id
    )
    rt: Runtime = ctx.resources
    rt.say(
        f"[bold]{escape(params['title'])}[/bold] {params['date']}: "
        f"{params['count']} posts wanted, {len(picked)} candidates"
        + (f", {len(assets)} local assets" if assets else "")
    )
    return [c.to_dict() for c in picked]


# --- step 2: one post per candidate, until `count` have an image ---------------------------


def _post_key(item: dict[str, Any]) -> str:
    return str(item["post_id"])


@flow.map(items="pick_candidates", quota="params.count", concurrency=1, policy=ONCE, key=_post_key)
async def illustrate(ctx: StepContext, item: dict[str, Any]) -> dict[str, Any]:
    """Make the candidate's post and its image; give up (and backfill) when the image fails."""
    rt: Runtime = ctx.resources
    news = NewsCandidate.from_dict(item)
    total = ctx.params["count"] * 5
    label = f"[{news.index:02d}/{total}] {escape(news.headline)}"
    saved = rt.posts.load(news.post_id)
    if saved is not None and saved.get("run_id") == ctx.run_id:
        reused = _reuse(rt, ctx, news, saved, label)
        if reused is not None:
            return reused
    post = _new_post(ctx, news)
    if news.reference_asset:
        name = "reference_" + Path(news.reference_asset).name
        rt.posts.copy_asset(news.post_id, news.reference_asset, name)
        post["platform"]["reference_assets"] = [f"assets/{name}"]
    rt.posts.save(post)
    rt.say(f"{label} generating image…")
    started = time.time()

    def on_retry(attempt: Attempt) -> None:
        _record_failure(rt, ctx, news, attempt, last=False)
        rt.say(
            f"  [yellow]attempt {attempt.number} failed[/yellow] ({attempt.kind}: "
            f"{escape(_short(attempt.message))}); retrying in {attempt.wait or 0:g}s"
        )

    def on_give_up(attempt: Attempt) -> None:
        _record_failure(rt, ctx, news, attempt, last=True)

    try:
        outcome = await generate_image_with_retry(
            news.prompt,
            client=rt.client,
            policy=rt.policy,
            on_retry=on_retry,
            on_give_up=on_give_up,
        )
    except ImageGenerationAbandoned as exc:
        _save_failed(rt, ctx, post, exc)
        rt.say(
            f"  [red]gave up after {len(exc.attempts)} attempt"
            f"{'s' if len(exc.attempts) != 1 else ''}[/red] ({exc.kind}): post saved as "
            "failed, no draft; the next candidate backfills"
        )
        raise
    return _save_ready(rt, ctx, post, news, outcome, started)


def _new_post(ctx: StepContext, news: NewsCandidate) -> dict[str, Any]:
    now = round(time.time(), 3)
    return {
        "post_id": news.post_id,
        "run_id": ctx.run_id,
        "batch": {"title": ctx.params["title"], "date": ctx.params["date"], "index": news.index},
        "title": news.headline,
        "body": f"{news.summary}\n\n#{news.category} #{ctx.params['title']}",
        "news": {"headline": news.headline, "summary": news.summary, "category": news.category},
        "prompt": news.prompt,
        "status": posts.GENERATING,
        "created_at": now,
        "updated_at": now,
        "platform": {"provider": "aliyun"},
    }


def _record_failure(
    rt: Runtime, ctx: StepContext, news: NewsCandidate, attempt: Attempt, *, last: bool
) -> None:
    record = {"run_id": ctx.run_id, "ok": False, "give_up": last, **attempt.to_dict()}
    rt.posts.log_attempt(news.post_id, record)
    ctx.emit("image.attempt_failed", {"post_id": news.post_id, "last": last, **attempt.to_dict()})
    logger.info(
        "post %s: image attempt %d failed (%s): %s",
        news.post_id,
        attempt.number,
        attempt.kind,
        attempt.message,
        extra={
            "post_id": news.post_id,
            "attempt": attempt.number,
            "kind": str(attempt.kind),
            "give_up": last,
        },
    )


def _save_failed(
    rt: Runtime, ctx: StepContext, post: dict[str, Any], exc: ImageGenerationAbandoned
) -> None:
    post["status"] = posts.FAILED
    post["error"] = exc.errors[-1] if exc.errors else str(exc)
    post["platform"]["image_generate"] = exc.summary()
    rt.posts.save(post)
    ctx.emit(
        "image.given_up",
        {
            "post_id": post["post_id"],
            "attempts": len(exc.attempts),
            "errors": exc.errors,
            "kind": str(exc.kind),
        },
    )


def _save_ready(
    rt: Runtime,
    ctx: StepContext,
    post: dict[str, Any],
    news: NewsCandidate,
    outcome: ImageOutcome,
    started: float,
) -> dict[str, Any]:
    picture = outcome.picture
    info = picture.image.info
    name = f"aliyun_{news.index:02d}{info.extension}"
    rt.posts.save_asset(news.post_id, name, picture.data)
    ref = ctx.artifacts.put(picture.data, info.media_type)
    meta = {
        "path": f"assets/{name}",
        "provider": picture.provider or rt.client.name,  # a fallback, while DashScope is down
        "model": picture.model or rt.client.model,
        "size": rt.client.size,
        "task_id": picture.task_id,
        "url": redact_url(picture.url) if picture.url else None,  # no signed query
        "prompt": news.prompt,
        "actual_prompt": picture.actual_prompt,
        **info.to_dict(),
        "artifact": ref.sha256,
        "attempts": outcome.attempts,
        "attempt_errors": outcome.errors,
        "elapsed": round(time.time() - started, 3),
    }
    post["platform"]["image"] = meta
    post["platform"]["images"] = [meta]
    if outcome.retried:
        post["platform"]["image_generate"] = outcome.summary()
    post["status"] = posts.READY
    rt.posts.save(post)
    rt.posts.log_attempt(
        news.post_id,
        {
            "run_id": ctx.run_id,
            "ok": True,
            "number": outcome.attempts,
            "task_id": picture.task_id,
            "path": meta["path"],
            "sha256": info.sha256,
        },
    )
    ctx.emit(
        "image.generated",
        {
            "post_id": news.post_id,
            "attempts": outcome.attempts,
            "path": meta["path"],
            "artifact": ref.sha256,
            "provider": meta["provider"],
        },
    )
    tries = f" on attempt {outcome.attempts}" if outcome.retried else ""
    by = (
        f" (made by the fallback {meta['provider']}: {rt.client.name} is down)"
        if meta["provider"] != rt.client.name
        else ""
    )
    rt.say(f"  [green]image saved[/green] {news.post_id}/{meta['path']}{tries}{escape(by)}")
    return _result(news, meta, ref.to_dict())


def _result(news: NewsCandidate, meta: dict[str, Any], artifact: dict[str, Any]) -> dict[str, Any]:
    return {
        "post_id": news.post_id,
        "index": news.index,
        "headline": news.headline,
        "image": meta["path"],
        "attempts": meta["attempts"],
        "attempt_errors": meta["attempt_errors"],
        "artifact": artifact,
    }


def _reuse(
    rt: Runtime, ctx: StepContext, news: NewsCandidate, saved: dict[str, Any], label: str
) -> dict[str, Any] | None:
    """What this run already did for the post before it was interrupted, if it finished.

    An image saved but not yet checkpointed is not generated (and paid for) again; a
    give-up already recorded stays recorded once (unless ``retry_given_up``).
    """
    status = saved.get("status")
    platform = saved.get("platform") or {}
    if status in (posts.READY, posts.DRAFT_SAVED):
        meta = platform.get("image") or {}
        path = rt.posts.post_dir(news.post_id) / str(meta.get("path", ""))
        if meta.get("sha256") and path.is_file():
            data = path.read_bytes()
            ref = ctx.artifacts.put(data, meta.get("media_type"))
            if ref.sha256 == meta["sha256"]:
                rt.say(f"{label} image already saved before the interruption: kept")
                return _result(news, meta, ref.to_dict())
    if status == posts.FAILED and not rt.retry_given_up:
        summary = platform.get("image_generate") or {}
        history = [Attempt.from_dict(a) for a in summary.get("history") or []]
        if summary.get("give_up") and history:
            kind = history[-1].kind
            if kind in SETUP_KINDS:
                rt.say(
                    f"{label} failed on {kind} in an earlier execution of this run, which a "
                    "retry does not mend but a fixed key or setting does: trying again"
                )
                return None
            rt.say(
                f"{label} [red]given up in an earlier execution of this run[/red] ({kind}, "
                f"{len(history)} attempt{'s' if len(history) != 1 else ''}): kept as failed; "
                "--retry-failed tries it again"
            )
            raise ImageGenerationAbandoned(images.OPERATION, history, news.prompt)
    return None


def _short(message: str, limit: int = 120) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


# --- step 3: drafts, for illustrated posts only ----------------------------------------------


@flow.map(items="illustrate", concurrency=1, policy=DRAFT_POLICY, key=_post_key)
async def save_draft(ctx: StepContext, item: dict[str, Any]) -> dict[str, Any]:
    """Save the post as a 小红书 draft, once per idempotency key (a resumed run finds it)."""
    rt: Runtime = ctx.resources
    post = rt.posts.load(item["post_id"])
    if post is None:
        raise ConfigError(f"post {item['post_id']} has no post.json in {rt.posts.root}")
    draft, created = rt.drafts.save(post, idempotency_key=ctx.idempotency_key)
    post["status"] = posts.DRAFT_SAVED
    post["platform"]["draft"] = {
        "draft_id": draft["draft_id"],
        "saved_at": draft["saved_at"],
        "idempotency_key": ctx.idempotency_key,
    }
    rt.posts.save(post)
    ctx.emit(
        "draft.saved",
        {"post_id": post["post_id"], "draft_id": draft["draft_id"], "created": created},
    )
    rt.say(
        f"draft {'saved' if created else 'already saved'}: {post['post_id']} "
        f"{escape(post['title'])}"
    )
    return {"post_id": post["post_id"], "draft_id": draft["draft_id"], "created": created}
