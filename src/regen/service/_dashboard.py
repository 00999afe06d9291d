"""The dashboard: server-rendered pages over the engine and the health monitor.

``/`` lists runs (live from ``/api/events``), ``/runs/{id}`` shows a run's steps (click one
to retry from it), its items with their images and its live event log and streamed text,
``/providers`` is the provider monitor. The pages read the engine directly; their small
script (``static/dashboard.js``) follows the service's event streams and calls its action
routes, so nothing needs a build step.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from importlib import resources
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from regen.engine import (
    Engine,
    EventType,
    FlowNotFound,
    ItemStatus,
    RunNotFound,
    RunStatus,
    format_error,
)
from regen.health import HealthMonitor

#: Static files the pages load, with their content types (nothing else is served).
_STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}
_ITEMS_SHOWN = 200
_EVENTS_SCANNED = 5000


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "–"
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("regen.service", "templates"),
        autoescape=select_autoescape(["html"]),  # every prompt, error and output escaped
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["pretty"] = lambda value: json.dumps(value, ensure_ascii=False, indent=2)
    return env


def _artifact(value: Any) -> str | None:
    """The sha256 of an image artifact a step or item returned, if it is one."""
    if isinstance(value, dict):
        sha = value.get("artifact")
        kind = str(value.get("content_type", ""))
        if isinstance(sha, str) and kind.startswith("image/"):
            return sha
        for inner in value.values():
            found = _artifact(inner)
            if found:
                return found
    return None


def dashboard_router(engine: Engine, monitor: HealthMonitor | None = None) -> APIRouter:
    """The dashboard's pages and static files, to include in the service's app."""
    router = APIRouter(include_in_schema=False)
    pages = _templates()

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        # Links start at the app's root: "/regen" when it is mounted there.
        base = str(request.scope.get("root_path", "")).rstrip("/")
        return HTMLResponse(pages.get_template(name).render(base=base, **context))

    @router.get("/", response_class=HTMLResponse)
    async def runs(request: Request, status: str | None = None, flow: str | None = None) -> Any:
        statuses = [status] if status else None
        if status and status not in {str(s) for s in RunStatus}:
            raise HTTPException(400, f"unknown status {status!r}")
        found = await engine.list_runs(status=statuses, flow=flow or None, limit=50)
        rows = []
        for run in found:
            detail = await engine.detail(run.id)
            done = sum(1 for s in detail.steps if str(s.status) in ("succeeded", "partial"))
            rows.append({"run": run, "done": done, "steps": len(detail.steps)})
        return page(
            request,
            "runs.html",
            rows=rows,
            status=status or "",
            flow=flow or "",
            statuses=[str(s) for s in RunStatus],
        )

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(request: Request, run_id: str) -> Any:
        try:
            detail = await engine.detail(run_id)
        except RunNotFound:
            raise HTTPException(404, f"no run {run_id}") from None
        try:
            specs = {s.name: s for s in engine.registry.get(detail.run.flow).steps}
        except FlowNotFound:
            specs = {}
        steps = [
            {
                "step": step,
                "side_effect": bool(getattr(specs.get(step.name), "side_effect", False)),
            }
            for step in detail.steps
        ]
        grids = {}
        for step in detail.steps:
            if step.kind != "map":
                continue
            items = await engine.items(run_id, step.name, limit=_ITEMS_SHOWN)
            grids[step.name] = [
                {
                    "item": item,
                    "image": _artifact(item.output),
                    "attempts": len(item.attempts)
                    + (1 if item.status is ItemStatus.SUCCEEDED and not item.cached else 0),
                }
                for item in items
            ]
        # The stream names each event by its type and EventSource hears only the names it
        # listens to: the engine's, and the app's own that the log holds so far.
        seen = {event.type for event in await engine.read_events(run_id, 0, _EVENTS_SCANNED)}
        error = detail.run.error
        return page(
            request,
            "run.html",
            detail=detail,
            run=detail.run,
            steps=steps,
            grids=grids,
            error=error,
            traceback=format_error(error) if error and error.get("frames") else None,
            # A running run whose process died (its lease expired) may be retried at once.
            process_lost=detail.run.lease_expired(time.time()),
            retryable=detail.run.status in (RunStatus.FAILED, RunStatus.PARTIAL)
            or detail.run.lease_expired(time.time()),
            types=json.dumps(sorted(seen | {str(t) for t in EventType})),
        )

    @router.get("/providers", response_class=HTMLResponse)
    async def providers(request: Request) -> Any:
        if monitor is not None:
            await monitor.read_breakers()
        statuses = [] if monitor is None else monitor.statuses()
        interval = None if monitor is None else monitor.interval
        return page(request, "providers.html", statuses=statuses, interval=interval)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        kind = _STATIC.get(name)
        if kind is None:
            raise HTTPException(404, "no such file")
        body = resources.files("regen.service").joinpath("static").joinpath(name).read_bytes()
        return Response(body, media_type=kind, headers={"cache-control": "no-cache"})

    return router
