"""The app factory. No module-level app: tests build one per settings object."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from vendor_service import dashboard
from vendor_service.docs_assets import install_offline_docs
from vendor_service.errors import install_error_handlers
from vendor_service.inference.batcher import Batcher
from vendor_service.inference.loading import LoadedModel, load_model
from vendor_service.metering import SQLiteStore, Store
from vendor_service.metrics import Metrics
from vendor_service.middleware import VendorMiddleware
from vendor_service.ratelimit import TokenBuckets
from vendor_service.routes import admin, embeddings, health, models, usage
from vendor_service.settings import VendorSettings


def create_app(
    settings: VendorSettings,
    *,
    model: LoadedModel | None = None,
    store: Store | None = None,
) -> FastAPI:
    """Build the vendor app. ``model``/``store`` are loaded/opened in the lifespan when None."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_flush_denormal(True)  # random-weight models crawl on denormals otherwise
        torch.set_num_threads(settings.inference_threads)
        own_store = store is None
        app.state.store = store if store is not None else SQLiteStore(settings.db_path)
        app.state.model = (
            model if model is not None else await run_in_threadpool(load_model, settings.model)
        )
        batcher = Batcher(
            app.state.model.model,
            max_batch=settings.batch.max_batch,
            max_wait_ms=settings.batch.max_wait_ms,
            debug_delay_ms=settings.batch.debug_delay_ms,
            on_batch=lambda kind, n: metrics.batch_size.labels(kind).observe(n),
            on_queue_depth=metrics.queue_depth.set,
        )
        batcher.start()
        app.state.batcher = batcher
        try:
            yield
        finally:
            app.state.batcher = None
            batcher.stop()
            if own_store:
                app.state.store.close()

    app = FastAPI(
        title="vendor-service",
        summary="A metered, per-key, pay-per-query CLIP embedding API.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN; install_offline_docs serves them
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.model = None
    app.state.batcher = None
    app.state.rate_limits = TokenBuckets()
    # In-flight charges are tagged with this id; `serve` refunds other ids' at start.
    app.state.instance_id = settings.instance_id or "inst_" + uuid.uuid4().hex
    install_error_handlers(app)
    for module in (embeddings, models, usage, admin, health):
        app.include_router(module.router)
    app.include_router(dashboard.router)
    install_offline_docs(app)
    app.add_middleware(
        VendorMiddleware,
        max_request_bytes=settings.limits.max_request_bytes,
        metrics=metrics,
    )
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers (``factory=True``): the settings ``serve`` validated and
    handed down (``VendorSettings.from_env``), else ``VENDOR_*`` env vars."""
    return create_app(VendorSettings.from_env())
