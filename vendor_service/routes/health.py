"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from vendor_service.deps import AuthenticatorDep, MetricsDep, SettingsDep, client_address
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
async def metrics(
    request: Request,
    metrics: MetricsDep,
    settings: SettingsDep,
    auth: AuthenticatorDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Prometheus exposition text; with ``VENDOR_METRICS_TOKEN`` set, only for that bearer."""
    if settings.metrics_token is not None:
        expected = "Bearer " + settings.metrics_token.get_secret_value()
        given = authorization or ""
        if not secrets.compare_digest(given.encode(), expected.encode()):
            client = client_address(request.scope)
            auth.check_blocked(client)
            raise auth.failed(
                request.app.state.rate_limits,
                client,
                ApiError(401, "unauthorized", "/metrics needs Authorization: Bearer <token>"),
            )
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
