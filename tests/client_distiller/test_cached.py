"""CachedTeacher, QueryCache and LocalTeacher with the real in-process tiny open_clip model."""

from __future__ import annotations

from pathlib import Path

import diskcache
import numpy as np
import pytest
from PIL import Image

from client_distiller.data import DomainFolder
from client_distiller.plan import build_plan, class_text_embeddings, fetch_plan
from client_distiller.teacher import (
    BudgetLedger,
    CachedTeacher,
    LocalTeacher,
    PayloadTeacher,
    QueryCache,
    QueryCapReached,
    Teacher,
    TeacherStats,
    encode_image,
    state_dict_fingerprint,
)


@pytest.fixture(scope="module")
def local() -> LocalTeacher:
    return LocalTeacher(model="vl2v-tiny")


def _cached(
    local: LocalTeacher, cache_dir: Path, **kw
) -> tuple[CachedTeacher, QueryCache, BudgetLedger]:
    cache, ledger = QueryCache(cache_dir), BudgetLedger(cache_dir)
    return CachedTeacher(local, cache, ledger, **kw), cache, ledger


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)) for _ in range(n)]


def test_local_teacher_card_and_fingerprint(local: LocalTeacher) -> None:
    assert isinstance(local, Teacher) and isinstance(local, PayloadTeacher)
    card = local.card
    assert card.image_size == 32 and card.embed_dim == 32
    assert card.fingerprint == state_dict_fingerprint(local.model)
    # Random weights are seeded: the same fingerprint in every process, so the cache is reusable.
    assert LocalTeacher(model="vl2v-tiny").card.fingerprint == card.fingerprint
    loading = pytest.importorskip("vendor_service.inference.loading")
    settings = pytest.importorskip("vendor_service.settings")
    served = loading.load_model(settings.ModelSettings(name="vl2v-tiny"))
    assert served.fingerprint == card.fingerprint  # the vendor serving it has the same one
    emb = local.embed_images(_images(3))
    assert emb.shape == (3, 32) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert local.queries_counted["images"] == 3


def test_cache_pays_once_and_stores_raw_float32(local, tmp_path: Path) -> None:
    t, _, ledger = _cached(local, tmp_path)
    imgs = _images(5)
    first = t.embed_images(imgs + imgs[:2], purpose="x")  # 2 duplicates inside one call
    assert t.sent == 5 and t.cache_hits == 2
    again = t.embed_images(imgs, purpose="x")
    assert t.sent == 5 and t.cache_hits == 7
    assert np.array_equal(first[:5], again)
    direct = local.embed_images(imgs)
    assert np.allclose(direct, again, atol=1e-6)
    # Values on disk are the raw little-endian float32 bytes, not pickles.
    key = t.keys_for("images", [encode_image(imgs[0], 32)])[0]
    assert t.is_cached(key)
    with diskcache.Cache(str(tmp_path / "embeddings")) as store:
        raw = store.get(key, read=False)
    assert isinstance(raw, bytes) and len(raw) == 32 * 4
    assert np.array_equal(np.frombuffer(raw, "<f4"), again[0])
    assert ledger.totals() == {"sent": 5, "charged": 5, "cache_hits": 7}
    assert t.stats() == TeacherStats(sent=5, charged=5, cache_hits=7, budget_remaining=None)
    assert not t.metered and t.usage() is None  # a local teacher is paid nothing
    t.close()
    # A new process-equivalent (new objects) still hits.
    t2, _, _ = _cached(local, tmp_path)
    t2.embed_images(imgs, purpose="x")
    assert t2.sent == 0 and t2.cache_hits == 5
    t2.close()


def test_cap_is_checked_before_sending(local, tmp_path: Path) -> None:
    t, cache, _ = _cached(local, tmp_path, max_queries=70)
    imgs = _images(100)
    with pytest.raises(QueryCapReached, match="--max-queries 70"):
        t.embed_images(imgs)
    assert t.sent == 70  # the cap is used exactly, never exceeded
    assert len(cache) == 70
    with pytest.raises(QueryCapReached):
        t.embed_texts(["a"])
    assert t.sent == 70
    t.close()


def test_fetch_plan_class_texts_and_views(local, tiny_dataset: Path, tmp_path: Path) -> None:
    ds = DomainFolder(tiny_dataset)
    plan = build_plan(ds, "sketch", views=2, prompts=["a photo of a {}", "a drawing of a {}"])
    assert plan.count().images == 20 * 2 + 4 + 10 and plan.count().texts == 3 * 2
    assert plan.text_queries[1].text == "a photo of a hot air balloon"
    t, _, _ = _cached(local, tmp_path)
    emb = fetch_plan(plan, t, progress=False)
    assert len(emb.train) == 40 and len(emb.eval) == 14
    assert emb.class_texts.shape == (3, 32) and emb.prompt_texts.shape == (2, 3, 32)
    # METHOD.md: T_c = normalize(mean_p normalize(e_pc)).
    per = local.embed_texts([q.text for q in plan.text_queries]).reshape(2, 3, 32)
    m = per.mean(0)
    assert np.allclose(emb.class_texts, m / np.linalg.norm(m, axis=1, keepdims=True), atol=1e-5)
    assert np.allclose(class_text_embeddings(per), emb.class_texts, atol=1e-6)
    # The embedding of (sample, view) is the teacher's embedding of exactly that view.
    s = plan.splits.train[3]
    view = plan.view_bank(32).view(s, 1)
    assert np.allclose(emb.train[(s.id, 1)], local.embed_images([view])[0], atol=1e-6)
    sent = t.sent
    fetch_plan(plan, t, progress=False)
    assert t.sent == sent  # everything from the cache the second time
    t.close()
