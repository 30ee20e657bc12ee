"""The client against the vendor app in process: ``open_teacher`` with an injected
``httpx.Client`` (Starlette's ``TestClient`` is one, on an in-process transport that also runs
the app's lifespan). Real app, real SQLite ledger, real PNG bytes; no sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from client_distiller.data import DomainFolder
from client_distiller.plan import build_plan, fetch_plan
from client_distiller.teacher import CachedTeacher, RemoteTeacher, Teacher, open_teacher
from shared_schemas import ImageEmbeddingRequest, TextEmbeddingRequest

ADMIN = "in-process-admin-token"


@pytest.fixture
def vendor(tmp_path: Path) -> Iterator[httpx.Client]:
    testclient = pytest.importorskip("fastapi.testclient")
    from vendor_service.app import create_app
    from vendor_service.settings import VendorSettings

    settings = VendorSettings(
        data_dir=tmp_path / "vendor", admin_token=ADMIN, model={"name": "vl2v-tiny"}
    )
    with testclient.TestClient(create_app(settings)) as client:
        yield client


def _key(vendor: httpx.Client, budget: int) -> str:
    r = vendor.post(
        "/v1/admin/keys",
        json={"name": "client", "budget": budget},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    r.raise_for_status()
    return r.json()["key"]


def _used(vendor: httpx.Client, key: str) -> int:
    r = vendor.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
    r.raise_for_status()
    return r.json()["budget"]["used"]


def test_fetch_through_an_injected_client(vendor: httpx.Client, tiny_dataset: Path, tmp_path):
    key = _key(vendor, 1000)
    plan = build_plan(DomainFolder(tiny_dataset), "sketch", views=2)
    with open_teacher(
        cache_dir=tmp_path / "cache", api_key=key, http_client=vendor, stage="fetch"
    ) as teacher:
        assert isinstance(teacher, Teacher) and isinstance(teacher.inner, RemoteTeacher)
        assert teacher.metered
        usage = teacher.usage()
        assert usage is not None and usage.budget.remaining == 1000
        emb = fetch_plan(plan, teacher, progress=False)
        stats = teacher.stats()
    assert len(emb.train) == 20 * 2 and emb.class_texts.shape == (3, 32)
    expected = plan.count().total  # every query distinct here: 40 views + 14 eval + 3 texts
    assert stats.sent == stats.charged == expected == _used(vendor, key)
    assert stats.budget_remaining == 1000 - expected
    # The factory closed its cache and ledger, never the client it was handed.
    assert not vendor.is_closed

    # A rerun reads the whole plan from the memo: nothing sent, every item a cache hit.
    with open_teacher(cache_dir=tmp_path / "cache", api_key=key, http_client=vendor) as again:
        emb2 = fetch_plan(plan, again, progress=False)
        assert again.stats().sent == 0 and again.stats().cache_hits == expected
    assert np.array_equal(emb2.class_texts, emb.class_texts)
    assert _used(vendor, key) == expected


def test_the_factory_closes_the_client_it_made(tmp_path: Path, monkeypatch) -> None:
    made: list[httpx.Client] = []
    real = httpx.Client

    def spy(*args, **kwargs):
        client = real(*args, **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(httpx, "Client", spy)
    with open_teacher(cache_dir=tmp_path, endpoint="http://127.0.0.1:9", api_key="k") as t:
        assert isinstance(t, CachedTeacher)
        assert len(made) == 1 and not made[0].is_closed
    assert made[0].is_closed


def test_requests_are_the_wire_contracts_models() -> None:
    seen: list[httpx.Request] = []
    card = {
        "id": "mock", "pretrained": None, "trained": False, "fingerprint": "f" * 64,
        "embed_dim": 4, "image_size": 8, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
        "context_length": 16, "logit_scale": 100.0, "price_per_image_query": 0.0,
        "price_per_text_query": 0.0, "max_items_per_request": 8, "max_request_bytes": 1 << 20,
    }  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [card]})
        seen.append(request)
        # Not the error schema: the client falls back to the raw text of the answer.
        return httpx.Response(400, text="<html>bad gateway page</html>")

    from PIL import Image

    from client_distiller.teacher import VendorError

    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://v")
    teacher = RemoteTeacher(client=client, api_key="vk_1", sleep=lambda s: None)
    with pytest.raises(VendorError, match="bad gateway page"):
        teacher.embed_texts(["a", "b"])
    with pytest.raises(VendorError):
        teacher.embed_images([Image.new("RGB", (10, 10))])
    texts, images = (json.loads(r.content) for r in seen)
    assert TextEmbeddingRequest.model_validate(texts).texts == ["a", "b"]
    assert len(ImageEmbeddingRequest.model_validate(images).images) == 1
    assert all(r.headers["Authorization"] == "Bearer vk_1" for r in seen)
    assert [r.url.path for r in seen] == ["/v1/embeddings/texts", "/v1/embeddings/images"]
