"""The service's ASGI app: REST for runs, SSE for their events, artifacts, metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from regen.engine import Engine, Flow
from regen.foundation import is_whole, remember_secret
from regen.health import AlertSettings, AlertWatcher, HealthMonitor
from regen.service import _auth, _errors
from regen.service._artifacts_api import artifacts_router
from regen.service._dashboard import dashboard_router
from regen.service._events_api import events_router
from regen.service._feed import RunFeeds
from regen.service._health_api import health_router
from regen.service._metrics import CONTENT_TYPE, Metrics
from regen.service._models import Login
from regen.service._runs_api import runs_router
from regen.service._sse import KEEPALIVE_S
from regen.service._worker import hosted_worker

_LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>regen: sign in</title>
<form id="f"><label>Token <input id="t" type="password" autofocus></label>
<button>Sign in</button></form><p id="m"></p><script>
document.getElementById("f").onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch("login", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: document.getElementById("t").value})});
  document.getElementById("m").textContent = r.ok ? "Signed in." : "Wrong token.";
  if (r.ok) location.href = new URLSearchParams(location.search).get("next") || "./";
};</script>"""


def create_app(
    engine: Engine,
    *,
    token: str | None = None,
    flows: Sequence[Flow | str] = (),
    execute: bool = False,
    worker_concurrency: int = 4,
    health: HealthMonitor | None = None,
    alerts: AlertSettings | None = None,
    keepalive: float = KEEPALIVE_S,
    poll: float = 0.25,
    title: str = "regen",
) -> FastAPI:
    """The service on ``engine``, as a FastAPI app to serve or mount (``app.mount("/regen",
    create_app(engine))``).

    ``token``: required by every route but ``/healthz`` (``Authorization: Bearer``, or the
    cookie ``POST /login`` sets). ``flows``: served flows (``Flow`` objects or
    ``MODULE:FLOW``), the only ones ``POST /api/runs`` starts. ``execute``: host a worker
    while the app runs (its lifespan; a mounted app's lifespan is not run by its parent:
    enter :func:`hosted_worker` in the parent's). ``health``: a provider health monitor,
    whose routes the app then serves. ``alerts``: watch the providers' retry rates and
    breakers while the app runs, announcing each crossing to the settings' command or
    webhook. ``keepalive``: seconds between keep-alive comments
    on idle event streams; ``poll``: how often streams look for events written by other
    processes.
    """
    if execute and (not is_whole(worker_concurrency) or worker_concurrency < 1):
        raise ValueError(f"worker_concurrency={worker_concurrency!r}: expected a whole number ≥ 1")
    if token is not None:
        if not token.strip():
            raise ValueError("the service's token is empty; pass a token, or None for none")
        remember_secret(token)
    served = [flow.name for flow in engine.register(*flows)] or None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if health is not None:
                await stack.enter_async_context(health)  # its checks every interval
            if alerts is not None and alerts.enabled:
                await stack.enter_async_context(AlertWatcher(engine.provider_state, alerts))
            if execute:
                await stack.enter_async_context(
                    hosted_worker(
                        engine,
                        flows=served,
                        concurrency=worker_concurrency,
                        gc_interval=engine.settings.gc_interval,
                    )
                )
            yield

    app = FastAPI(
        title=title,
        summary="Durable AI generation runs: REST and resumable Server-Sent Events.",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    _errors.install(app)
    guard = _auth.require(token)
    feeds = RunFeeds(engine, poll=poll, keepalive=keepalive)
    metrics = Metrics(engine, health)
    app.state.engine = engine

    app.include_router(runs_router(engine), dependencies=guard)
    app.include_router(
        events_router(engine, feeds, keepalive=keepalive, poll=poll), dependencies=guard
    )
    app.include_router(artifacts_router(engine), dependencies=guard)
    if health is not None:
        app.include_router(health_router(health), dependencies=guard)
    app.include_router(_service_router(metrics), dependencies=guard)
    # The dashboard's pages send a browser without the token to the sign-in page.
    app.include_router(dashboard_router(engine, health), dependencies=_auth.require_page(token))
    app.include_router(_public_router(app, token))
    return app


def _service_router(metrics: Metrics) -> APIRouter:
    api = APIRouter(tags=["service"])

    @api.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
    async def prometheus() -> Response:
        """Prometheus metrics: runs by status, failed attempts by kind, give-ups, step
        durations."""
        return Response(await metrics.render(), media_type=CONTENT_TYPE)

    return api


def _public_router(app: FastAPI, token: str | None) -> APIRouter:
    """``/healthz`` (always open), the schema and docs (behind the token, when there is
    one), and signing in."""
    api = APIRouter(tags=["service"])
    guard = _auth.require(token)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Whether the server is up (no token needed)."""
        return {"status": "ok"}

    @api.get("/openapi.json", include_in_schema=False, dependencies=guard)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @api.get("/docs", include_in_schema=False, dependencies=guard)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="openapi.json", title=f"{app.title}: API")

    @api.get("/login", include_in_schema=False)
    async def login_page() -> HTMLResponse:
        return HTMLResponse(_LOGIN_PAGE)

    @api.post("/login", status_code=204, responses={401: {"description": "Wrong token."}})
    async def login(body: Login) -> Response:
        """Exchange the server's token for a cookie (for a browser's EventSource, which
        cannot send headers)."""
        if token is None:
            return Response(status_code=204)
        if not _auth.matches(body.token, token):
            raise HTTPException(401, "wrong token")
        response = Response(status_code=204)
        response.set_cookie(
            _auth.COOKIE, token, httponly=True, samesite="strict", path="/", max_age=30 * 86400
        )
        return response

    return api
