"""The app factory. No module-level app: tests build one per settings object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from vendor_service import dashboard
from vendor_service.deps import Authenticator
from vendor_service.docs_assets import install_offline_docs
from vendor_service.errors import install_error_handlers
from vendor_service.inference.batcher import Batcher
from vendor_service.inference.loading import LoadedModel, load_model
from vendor_service.metering import Store, open_store
from vendor_service.metrics import Metrics
from vendor_service.middleware import RouteTable, VendorMiddleware, install_access_log_filter
from vendor_service.ratelimit import TokenBuckets
from vendor_service.routes import admin, embeddings, health, models, usage
from vendor_service.settings import OwnerSettings, VendorSettings


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
        if store is None:
            opened = await run_in_threadpool(open_store, settings.data_dir, settings.database_url)
        else:
            opened = store
        app.state.store = opened
        app.state.model = (
            model if model is not None else await run_in_threadpool(load_model, settings.model)
        )
        # This process owns the charges it takes; its heartbeat keeps that claim alive and
        # refunds the charges of owners that died (a killed worker, a dead replica).
        owner = app.state.instance_id
        server = settings.instance_id or ""
        await run_in_threadpool(opened.register_owner, owner, server)
        heartbeat = asyncio.create_task(_heartbeat(opened, owner, server, settings.owners))
        limiter = opened.rate_limiter()
        app.state.rate_limits = limiter
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
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            # What is still in flight now never reaches a client: refunded, keys freed.
            await run_in_threadpool(opened.release_owner, owner)
            limiter.close()
            if own_store:
                opened.close()

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
    # The owner id of this app's process: its in-flight charges are tagged with it.
    app.state.instance_id = "own_" + uuid.uuid4().hex
    app.state.authenticator = Authenticator(settings, metrics)
    app.state.route_table = RouteTable(app)
    install_error_handlers(app)
    for module in (embeddings, models, usage, admin, health):
        app.include_router(module.router)
    app.include_router(dashboard.router)
    install_offline_docs(app)
    app.add_middleware(
        VendorMiddleware,
        settings=settings,
        metrics=metrics,
        authenticator=app.state.authenticator,
        routes=app.state.route_table,
        embedding_paths=embeddings.PATHS,
    )
    install_access_log_filter()
    return app


async def _heartbeat(store: Store, owner: str, server: str, settings: OwnerSettings) -> None:
    """Every ``heartbeat_s``: refresh this owner's lease and reap dead owners' charges."""
    while True:
        await asyncio.sleep(settings.heartbeat_s)
        try:
            await run_in_threadpool(store.heartbeat, owner, server, lease_s=settings.lease_s)
        except Exception as exc:  # noqa: BLE001 - a database hiccup: the next beat tries again
            logging.getLogger(__name__).warning("owner heartbeat failed: %s", exc)


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers (``factory=True``): the settings ``serve`` validated and
    handed down (``VendorSettings.from_env``), else ``VENDOR_*`` env vars."""
    return create_app(VendorSettings.from_env())
