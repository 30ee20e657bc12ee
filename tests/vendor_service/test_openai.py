"""``POST /v1/embeddings`` through the real ``openai`` SDK against a real vendor process.

One vendor (1 worker, vl2v-tiny, random weights) serves the module; every test has its own
key. The SDK is used as its users use it: ``OpenAI(base_url=..., api_key=...)``, texts with
``embeddings.create``, images with ``extra_body={"modality": "image"}`` and data URIs. What it
returns is compared bit for bit with the native routes, and what it was charged with the key's
own ``/v1/usage``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.helpers.vendor_process import VendorProcess, start_vendor

pytestmark = pytest.mark.slow
MODEL = "vl2v-tiny"


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VendorProcess]:
    v = start_vendor(tmp_path_factory.mktemp("openai"), model=MODEL)
    yield v
    v.stop()


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def _sdk(vendor: VendorProcess, key: str) -> openai.OpenAI:
    # No retries: a refusal must surface at once, as the error the SDK raises for it.
    client = openai.OpenAI(base_url=vendor.base_url + "/v1", api_key=key, max_retries=0)
    _CLIENTS.append(client)
    return client


def _png(seed: int, size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def _uri(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


def _native(vendor: VendorProcess, key: str, endpoint: str, items: list[str]) -> np.ndarray:
    field = "images" if endpoint == "images" else "texts"
    r = httpx.post(
        f"{vendor.base_url}/v1/embeddings/{endpoint}",
        json={field: items},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def _vectors(resp: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    assert [d.index for d in resp.data] == list(range(len(resp.data)))
    return np.array([d.embedding for d in resp.data], dtype=np.float32)


def _used(vendor: VendorProcess, key: str) -> int:
    return int(vendor.usage(key)["budget"]["used"])


def test_texts_in_both_encodings_equal_the_native_route_bit_for_bit(vendor):
    key = vendor.create_key(100)
    client = _sdk(vendor, key)
    texts = ["a photo of a red boat", "a sketch of a tree", "a fish"]
    # The SDK's default asks for base64 and decodes it itself; float is JSON numbers.
    default = client.embeddings.create(model=MODEL, input=texts)
    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    raw = client.embeddings.with_raw_response.create(
        model=MODEL, input=texts, encoding_format="base64"
    )
    native = _native(vendor, key, "texts", texts)
    assert native.shape == (3, int(vendor.card()["embed_dim"]))
    assert np.array_equal(_vectors(default), native)
    assert np.array_equal(_vectors(floats), native)
    body = raw.http_response.json()
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["object"] for d in body["data"]] == ["embedding"] * 3
    wire = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in body["data"]])
    assert np.array_equal(wire, native)  # little-endian float32, as OpenAI's API
    # usage counts the queries charged: one per text
    assert default.usage.prompt_tokens == default.usage.total_tokens == 3
    assert raw.headers["x-queries-charged"] == "3"
    assert _used(vendor, key) == 3 * 4  # three SDK calls and the native one


def test_one_string_is_one_query(vendor):
    key = vendor.create_key(10)
    resp = _sdk(vendor, key).embeddings.create(model=MODEL, input="a sketch of a house")
    assert len(resp.data) == 1 and resp.usage.total_tokens == 1
    assert np.array_equal(_vectors(resp), _native(vendor, key, "texts", ["a sketch of a house"]))
    assert _used(vendor, key) == 2


def test_images_as_data_uris_equal_the_native_route(vendor):
    key = vendor.create_key(100)
    files = [_png(0), _png(1, fmt="JPEG"), _png(2, size=(64, 48))]
    uris = [_uri(files[0]), _uri(files[1], "image/jpeg"), _uri(files[2])]
    resp = _sdk(vendor, key).embeddings.create(
        model=MODEL, input=uris, extra_body={"modality": "image"}
    )
    native = _native(vendor, key, "images", [base64.b64encode(f).decode() for f in files])
    assert np.array_equal(_vectors(resp), native)
    assert resp.usage.prompt_tokens == 3
    assert _used(vendor, key) == 6
    assert vendor.usage(key)["queries_by_endpoint"] == {"images": 6}


def test_a_402_surfaces_as_the_sdks_error_with_the_vendors_message(vendor):
    key = vendor.create_key(2)
    client = _sdk(vendor, key)
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model=MODEL, input=["a", "b", "c"])
    err = caught.value
    assert err.status_code == 402 and err.code == "budget_exceeded"
    assert "request needs 3 queries; 2 remain" in str(err)
    assert isinstance(err.body, dict) and err.body["message"] == "request needs 3 queries; 2 remain"
    assert err.response.headers["x-budget-remaining"] == "2"
    assert _used(vendor, key) == 0
    # what fits is served, and the charge is in the key's ledger
    assert client.embeddings.create(model=MODEL, input=["a", "b"]).usage.total_tokens == 2
    usage = vendor.usage(key)
    assert usage["budget"] == {"limit": 2, "used": 2, "remaining": 0}
    assert [(e["endpoint"], e["queries"]) for e in usage["entries"]] == [("texts", 2)]


def test_an_idempotent_retry_is_free_and_recorded_once(vendor):
    key = vendor.create_key(10)
    client = _sdk(vendor, key)
    headers = {"Idempotency-Key": "chunk-1"}
    first = client.embeddings.create(model=MODEL, input=["a", "b"], extra_headers=headers)
    again = client.embeddings.with_raw_response.create(
        model=MODEL, input=["a", "b"], extra_headers=headers
    )
    replayed = again.parse()
    assert np.array_equal(_vectors(replayed), _vectors(first))
    assert replayed.usage.prompt_tokens == 0 and again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-queries-charged"] == "0"
    # a different body under the same key is refused, as natively
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.embeddings.create(model=MODEL, input=["c"], extra_headers=headers)
    assert caught.value.code == "idempotency_key_reused"
    ledger = vendor.usage(key)["entries"]
    # the key is scoped to this API: recorded as openai:<key>
    assert [(e["queries"], e["idempotency_key"]) for e in ledger] == [(2, "openai:chunk-1")]
    assert _used(vendor, key) == 2


def test_the_same_idempotency_key_on_both_apis_is_two_requests(vendor):
    key = vendor.create_key(10)
    auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "shared"}
    r = httpx.post(
        vendor.base_url + "/v1/embeddings/texts", json={"texts": ["a"]}, headers=auth, timeout=60
    )
    assert r.status_code == 200 and r.headers["x-queries-charged"] == "1"
    resp = _sdk(vendor, key).embeddings.create(
        model=MODEL, input=["a"], extra_headers={"Idempotency-Key": "shared"}
    )
    assert resp.usage.total_tokens == 1
    assert np.array_equal(_vectors(resp), np.array([r.json()["data"][0]["embedding"]], "f4"))
    assert _used(vendor, key) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "code", "words"),
    [
        (
            {"input": ["https://example.com/cat.png"], "extra_body": {"modality": "image"}},
            openai.BadRequestError, "remote_image_url", "does not fetch images",
        ),
        (
            {"input": ["a cat"], "extra_body": {"modality": "image"}},
            openai.BadRequestError, "invalid_image_uri", "data:image/png;base64",
        ),
        (
            {"input": [_uri(_png(4), "image/png"), _uri(_png(4, fmt="GIF"), "image/gif")],
             "extra_body": {"modality": "image"}},
            openai.BadRequestError, "invalid_image_uri", "input[1] is not a data:image/png",
        ),
        (
            {"input": [_uri(_png(4, fmt="GIF"))], "extra_body": {"modality": "image"}},
            openai.BadRequestError, "unsupported_image", "input[0] is GIF, not PNG or JPEG",
        ),
        (
            {"input": ["a", _uri(_png(3))]},
            openai.BadRequestError, "mixed_modalities", '"modality": "image"',
        ),
        (
            {"input": ["a"], "extra_body": {"modality": "audio"}},
            openai.UnprocessableEntityError, "invalid_request", "modality",
        ),
        (
            {"input": ["a"], "dimensions": 7},
            openai.BadRequestError, "invalid_dimensions", "dimensions=7",
        ),
        (
            {"input": [_uri(b"\x89PNG\r\n\x1a\nnot really")], "extra_body": {"modality": "image"}},
            openai.BadRequestError, "invalid_image", "input[0] is not a readable PNG",
        ),
        (
            {"input": ["a"], "model": "text-embedding-3-small"},
            openai.NotFoundError, "model_not_found", "serves 'vl2v-tiny'",
        ),
        ({"input": []}, openai.UnprocessableEntityError, "empty_request", "at least one"),
    ],
    ids=["remote-url", "not-a-uri", "gif-uri", "gif-as-png", "mixed", "unknown-modality", "dimensions",
         "broken-png", "unknown-model", "empty"],
)  # fmt: skip
def test_refusals_are_clear_4xx_and_charge_nothing(vendor, kwargs, error, code, words):
    key = vendor.create_key(10)
    kwargs = {"model": MODEL, **kwargs}
    with pytest.raises(error) as caught:
        _sdk(vendor, key).embeddings.create(**kwargs)
    assert caught.value.code == code, caught.value.body
    assert words in caught.value.body["message"], caught.value.body
    assert caught.value.body["request_id"] == caught.value.response.headers["x-request-id"]
    assert _used(vendor, key) == 0


def test_dimensions_equal_to_the_models_size_are_accepted(vendor):
    key = vendor.create_key(10)
    dim = int(vendor.card()["embed_dim"])
    resp = _sdk(vendor, key).embeddings.create(model=MODEL, input=["a"], dimensions=dim)
    assert len(resp.data[0].embedding) == dim


def test_a_wrong_key_is_the_sdks_authentication_error(vendor):
    with pytest.raises(openai.AuthenticationError) as caught:
        _sdk(vendor, "vk_not_a_key").embeddings.create(model=MODEL, input=["a"])
    assert caught.value.code == "invalid_key"


def test_models_list_parses_and_keeps_the_card(vendor):
    key = vendor.create_key(1)
    models = _sdk(vendor, key).models.list()
    (model,) = models.data
    card = vendor.card()
    assert model.id == MODEL
    extra = model.model_extra or {}
    assert extra["fingerprint"] == card["fingerprint"] and extra["embed_dim"] == card["embed_dim"]
