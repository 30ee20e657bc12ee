"""``--api openai``: the client against an OpenAI-compatible embeddings server.

Infinity itself needs its own torch and transformers (a heavy install outside ``make test``:
``scripts/interop_infinity.py`` runs the real one). Here a small server speaks Infinity's wire
format exactly (``GET /models`` without a card, ``POST /embeddings`` with ``modality: image``
and data URIs, base64 little-endian float32 answers, no metering headers, no usage route),
served by uvicorn on loopback and computing its answers with the random-weight ``vl2v-tiny``,
so the client's answers can be checked against the same model run in process.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic_settings import get_subcommand

from client_distiller.cli import main, parse
from client_distiller.data import DomainFolder
from client_distiller.plan import build_plan
from client_distiller.teacher import (
    CardFacts,
    LocalTeacher,
    OpenAITeacher,
    QueryCache,
    VendorError,
    endpoint_fingerprint,
    item_digest,
)
from client_distiller.teacher.wire import encode_text
from shared_schemas import IMAGES, TEXTS
from tests.helpers.vendor_process import free_port

MODEL = "tiny-clip"


class InfinityLike:
    """Infinity 0.0.78's OpenAI routes, answered by ``vl2v-tiny`` in process."""

    def __init__(self) -> None:
        self.teacher = LocalTeacher(model="vl2v-tiny")
        self.requests: list[dict] = []
        self.app = FastAPI()
        self.app.get("/models")(self.models)
        self.app.post("/embeddings")(self.embeddings)

    async def models(self) -> dict:
        return {
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "owned_by": "infinity", "backend": "torch",
                      "capabilities": ["embed", "image_embed"], "stats": {"batch_size": 32}}],
        }  # fmt: skip

    async def embeddings(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.requests.append(body)
        if body.get("model") != MODEL:
            return JSONResponse({"error": {"message": "unknown model", "type": "x"}}, 400)
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if body.get("modality") == "image":
            prefix = "data:image/png;base64,"
            assert all(i.startswith(prefix) for i in items), items[0][:40]
            vecs = self.teacher.embed_payloads(
                IMAGES, [base64.b64decode(i.removeprefix(prefix)) for i in items]
            )
        else:
            vecs = self.teacher.embed_payloads(TEXTS, items)
        assert vecs is not None
        data = [
            {"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
             if body.get("encoding_format") == "base64" else v.tolist()}
            for i, v in enumerate(vecs)
        ]  # fmt: skip
        usage = {"prompt_tokens": 3 * len(items), "total_tokens": 3 * len(items)}
        return JSONResponse({"object": "list", "data": data, "model": MODEL, "usage": usage})


@pytest.fixture(scope="module")
def infinity() -> Iterator[tuple[str, InfinityLike]]:
    fake = InfinityLike()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", fake
    server.should_exit = True
    thread.join(10)


def _card(tmp_path: Path, **extra: object) -> Path:
    tiny = LocalTeacher(model="vl2v-tiny").card
    path = tmp_path / "card.json"
    facts = {"image_size": tiny.image_size, "embed_dim": tiny.embed_dim,
             "logit_scale": tiny.logit_scale, **extra}  # fmt: skip
    path.write_text(json.dumps(facts))
    return path


def _fetch(base: str, data: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "fetch", "--api", "openai", "--endpoint", base, "--model", MODEL, "--data", str(data),
        "--target-domain", "sketch", "--views", "2", "--cache-dir", str(cache), "--no-progress",
        *extra,
    ]  # fmt: skip


def test_fetch_then_rerun_sends_zero_queries(infinity, tiny_dataset, tmp_path, capsys) -> None:
    base, fake = infinity
    cache, card = tmp_path / "cache", _card(tmp_path)
    fake.requests.clear()
    assert main(_fetch(base, tiny_dataset, cache, "--card", str(card))) == 0
    out = capsys.readouterr().out
    total = build_plan(DomainFolder(tiny_dataset), "sketch", views=2).count().total
    assert f"done: sent {total} queries" in out, out
    image_requests = [r for r in fake.requests if r.get("modality") == "image"]
    assert image_requests and all(r["encoding_format"] == "base64" for r in fake.requests)
    assert all(len(r["input"]) <= 32 for r in fake.requests)  # Infinity's 32-image limit
    n = len(fake.requests)
    assert main(_fetch(base, tiny_dataset, cache, "--card", str(card))) == 0
    assert "done: sent 0 queries" in capsys.readouterr().out
    assert len(fake.requests) == n  # the rerun asked the server nothing


def test_answers_are_the_served_models_and_keyed_on_endpoint_and_model(infinity, tmp_path) -> None:
    base, _ = infinity
    facts = CardFacts.from_file(_card(tmp_path))
    with httpx.Client(base_url=base, timeout=30) as http:
        teacher = OpenAITeacher(client=http, model=MODEL, facts=facts)
        card = teacher.card
        texts = ["a photo of a fish", "a sketch of a tree"]
        got = teacher.embed_texts(texts)
    local = LocalTeacher(model="vl2v-tiny")
    np.testing.assert_array_equal(got, local.embed_texts(texts))  # normalized: kept bit for bit
    # No fingerprint given: the answers are keyed on where they came from.
    assert card.fingerprint == endpoint_fingerprint(base, MODEL)
    assert card.fingerprint.startswith("url-") and card.fingerprint != local.card.fingerprint
    assert endpoint_fingerprint(base + "/", MODEL) == card.fingerprint
    # ... so the same server under another name is another cache.
    assert endpoint_fingerprint(base.replace("127.0.0.1", "localhost"), MODEL) != card.fingerprint
    assert endpoint_fingerprint(base, "other-model") != card.fingerprint
    assert card.max_items_per_request == 32 and card.price_per_image_query == 0


def test_a_stated_fingerprint_reuses_a_cache_filled_elsewhere(
    infinity, tiny_dataset, tmp_path, capsys
) -> None:
    base, fake = infinity
    cache = tmp_path / "cache"
    local = ["--local-teacher", "vl2v-tiny", "--cache-dir", str(cache), "--no-progress"]
    common = ["--data", str(tiny_dataset), "--target-domain", "sketch", "--views", "2"]
    assert main(["fetch", *common, *local]) == 0
    capsys.readouterr()
    # The same weights behind an OpenAI-compatible server: with their fingerprint stated, the
    # answers computed in process are the server's answers, so nothing is sent.
    fingerprint = LocalTeacher(model="vl2v-tiny").card.fingerprint
    card = _card(tmp_path, fingerprint=fingerprint)
    fake.requests.clear()
    assert main(_fetch(base, tiny_dataset, cache, "--card", str(card))) == 0
    assert "done: sent 0 queries" in capsys.readouterr().out
    assert fake.requests == []
    keys = [item_digest(fingerprint, TEXTS, encode_text("a photo of a fish"))]
    cached = QueryCache(cache)
    try:
        assert cached.contains(keys[0])
    finally:
        cached.close()


def test_missing_card_facts_are_one_line_naming_the_flags(
    infinity, tiny_dataset, tmp_path, capsys
) -> None:
    base, fake = infinity
    fake.requests.clear()
    code = main(_fetch(base, tiny_dataset, tmp_path / "c", "--card-image-size", "32"))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "embed_dim, logit_scale" in err and "--card-embed-dim, --card-logit-scale" in err
    assert fake.requests == []  # nothing was sent
    (tmp_path / "bad.json").write_text('{"image_size": 32, "embed_dimm": 8}')
    code = main(_fetch(base, tiny_dataset, tmp_path / "c", "--card", str(tmp_path / "bad.json")))
    err = capsys.readouterr().err
    assert code == 1 and "embed_dimm" in err and "Traceback" not in err


def test_card_flags_override_the_card_file(tmp_path) -> None:
    path = _card(tmp_path)
    command = get_subcommand(
        parse(["fetch", "--api", "openai", "--card", str(path), "--card-logit-scale", "50"])
    )
    facts = command.card_facts()
    assert (
        facts.logit_scale == 50 and facts.image_size == json.loads(path.read_text())["image_size"]
    )


def _mock(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://vendor/v1")


def test_metering_headers_usage_and_errors_are_read_where_a_server_sends_them() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(404)
        if request.url.path == "/v1/usage":
            return httpx.Response(404, json={"detail": "Not Found"})
        body = json.loads(request.content)
        if body["input"] == ["refuse"]:
            return httpx.Response(400, json={"error": {"message": "too long", "type": "invalid"}})
        vec = np.array([3.0, 4.0], dtype="<f4")  # not normalized: the client normalizes it
        data = [{"index": i, "embedding": vec.tolist()} for i in range(len(body["input"]))]
        return httpx.Response(
            200,
            json={"data": data},
            headers={"X-Queries-Charged": "0", "X-Budget-Remaining": "41"},
        )

    facts = CardFacts(image_size=8, embed_dim=2, logit_scale=10.0, fingerprint="f" * 64)
    with _mock(handler) as http:
        teacher = OpenAITeacher(client=http, model="m", facts=facts, sleep=lambda s: None)
        assert teacher.usage() is None  # no usage route: not an error
        results = []
        out = teacher.embed_payloads(TEXTS, ["a", "b"], on_chunk=results.append)
        assert out is not None
        np.testing.assert_allclose(out, [[0.6, 0.8], [0.6, 0.8]], rtol=1e-6)
        assert (results[0].charged, results[0].budget_remaining) == (0, 41)  # a replay
        with pytest.raises(VendorError, match="too long"):
            teacher.embed_texts(["refuse"])
