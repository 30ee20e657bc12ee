"""Self-hosted API docs: ``/docs`` (Swagger UI) loads every asset from the vendor.

FastAPI's default docs pages load Swagger UI and ReDoc from a CDN, so they are blank offline,
where this project runs by default. The assets come from the ``fastapi-offline`` package, which
ships the Swagger UI bundle, its CSS and a favicon as package data; the page is FastAPI's own
HTML (its self-hosting recipe) pointed at them. The app must be built with ``docs_url=None,
redoc_url=None`` so the CDN pages are not registered first.

There is no ``/redoc``: ReDoc's bundle (2.x, shipped by the same package) always loads its
sidebar logo from cdn.redoc.ly, so even self-hosted it reaches out of the machine.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the docs' assets are served (under the docs' own prefix, so one proxy rule covers both).
ASSETS_URL = "/docs/assets"

#: The files the page loads, all from :data:`ASSETS_URL`.
SWAGGER_JS, SWAGGER_CSS, FAVICON = "swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"


def assets_dir() -> Path:
    """The folder of the shipped assets (``fastapi_offline/static``)."""
    return Path(str(files("fastapi_offline") / "static"))


def install_offline_docs(app: FastAPI, *, docs_url: str = "/docs") -> None:
    """Serve ``docs_url`` (Swagger UI) with its assets from the vendor.

    Args:
        app: an app built with ``docs_url=None, redoc_url=None``.
        docs_url: path of the Swagger UI page.

    Raises:
        RuntimeError: the app still has FastAPI's CDN pages, or the assets are missing.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise RuntimeError("build the app with docs_url=None, redoc_url=None first")
    folder = assets_dir()
    missing = [n for n in (SWAGGER_JS, SWAGGER_CSS, FAVICON) if not (folder / n).is_file()]
    if missing:
        raise RuntimeError(f"the docs assets {missing} are missing from {folder}")
    app.mount(ASSETS_URL, StaticFiles(directory=folder), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or f"{docs_url}/oauth2-redirect"

    def asset(request: Request, name: str) -> str:
        # root_path: the vendor may sit behind a proxy under a prefix
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_js_url=asset(request, SWAGGER_JS),
            swagger_css_url=asset(request, SWAGGER_CSS),
            swagger_favicon_url=asset(request, FAVICON),
            # null: Swagger UI would otherwise ask validator.swagger.io for a badge
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
