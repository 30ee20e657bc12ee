"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from vendor_service.deps import MetricsDep
from vendor_service.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> dict[str, str]:
    """The model is loaded and the inference worker runs (503 otherwise)."""
    state = request.app.state
    if getattr(state, "model", None) is None or getattr(state, "batcher", None) is None:
        raise ApiError(503, "not_ready", "model not loaded")
    return {"status": "ready", "model": state.model.name, "fingerprint": state.model.fingerprint}


@router.get("/metrics", include_in_schema=False)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus exposition text."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
