"""Vendor test fixtures: one tiny random-weight model per session, one app per test."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vendor_service.app import create_app
from vendor_service.inference.loading import LoadedModel, load_model
from vendor_service.settings import ModelSettings, VendorSettings

ADMIN = "test-admin-token"


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    return load_model(ModelSettings(name="vl2v-tiny"))


def image_b64(
    size: tuple[int, int] = (40, 30), fmt: str = "PNG", color=(200, 30, 30), mode: str = "RGB"
) -> str:
    """A real encoded image, base64."""
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, fmt)
    return base64.b64encode(buf.getvalue()).decode()


def make_settings(tmp_path: Path, **groups: dict[str, Any]) -> VendorSettings:
    return VendorSettings(
        data_dir=tmp_path / "data",
        admin_token=ADMIN,
        model={"name": "vl2v-tiny"},
        **groups,
    )


class Api:
    """A TestClient plus shortcuts for keys."""

    def __init__(self, client: TestClient, app) -> None:
        self.client = client
        self.app = app

    @property
    def store(self):
        return self.app.state.store

    def new_key(self, budget: int = 100, **fields: Any) -> tuple[str, dict[str, str], str]:
        """(clear key, auth headers, key id)."""
        r = self.client.post(
            "/v1/admin/keys",
            json={"name": "t", "budget": budget, **fields},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        return key, {"Authorization": f"Bearer {key}"}, r.json()["info"]["id"]

    def used(self, key_id: str) -> int:
        return self.store.get_key(key_id).used


@pytest.fixture
def make_api(tmp_path: Path, tiny_model: LoadedModel) -> Iterator[Callable[..., Any]]:
    """``with make_api(limits={...}) as api:`` builds a fresh app on a fresh SQLite file."""

    @contextmanager
    def make(model: LoadedModel | None = None, **groups: Any) -> Iterator[Api]:
        app = create_app(make_settings(tmp_path, **groups), model=model or tiny_model)
        with TestClient(app) as client:
            yield Api(client, app)

    return make


@pytest.fixture
def api(make_api) -> Iterator[Api]:
    with make_api() as a:
        yield a
