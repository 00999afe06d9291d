"""regen's HTTP service: an ASGI app (FastAPI) with REST for runs, retries, checkpoints,
items and artifacts, the event logs as resumable Server-Sent Events, and Prometheus
metrics. ``regen serve`` serves it; apps mount it::

    from regen.engine import Engine
    from regen.service import create_app

    app.mount("/regen", create_app(Engine(), flows=["myapp.flows:digest"]))

Needs the ``server`` extra (``pip install 'regen[server]'``).
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"regen.service needs the server extra ({exc.name} is missing): pip install 'regen[server]'"
    ) from exc

from regen.service._app import create_app
from regen.service._health_api import health_router
from regen.service._worker import hosted_worker

__all__ = ["create_app", "health_router", "hosted_worker"]
