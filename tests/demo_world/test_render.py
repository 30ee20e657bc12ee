"""The demo world's generator: determinism, coverage, learnability, the benchmark on disk."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from demo_world import assets, benchmark
from demo_world.corpus import STREAM_CORPUS, draw_set
from demo_world.render import (
    BENCHMARK_CLASSES,
    BENCHMARK_STYLES,
    CLASSES,
    STYLES,
    image_rng,
    render,
)


def test_world_design_is_fixed():
    assert len(CLASSES) >= 20 and len(STYLES) >= 8
    assert set(BENCHMARK_CLASSES) <= set(CLASSES) and len(BENCHMARK_CLASSES) == 7
    assert set(BENCHMARK_STYLES) <= set(STYLES) and len(BENCHMARK_STYLES) == 4
    assert assets.BENCHMARK_CLASSES == BENCHMARK_CLASSES
    assert assets.BENCHMARK_STYLES == BENCHMARK_STYLES
    assert benchmark.IMAGES_PER_CLASS * 7 * 4 == 2240


def test_same_seed_same_bytes_other_seed_differs():
    a = benchmark.png_bytes("sketch", "boat", 3)
    assert a == benchmark.png_bytes("sketch", "boat", 3)
    assert a != benchmark.png_bytes("sketch", "boat", 3, seed=benchmark.BENCHMARK_SEED + 1)
    assert a != benchmark.png_bytes("sketch", "boat", 4)
    im = Image.open(io.BytesIO(a))
    assert im.format == "PNG" and im.size == (64, 64) and im.mode == "RGB"


def test_corpus_is_deterministic_with_varied_captions():
    x1, y1, s1, c1 = draw_set(40, 7, STREAM_CORPUS, with_captions=True, progress=False)
    x2, y2, _, c2 = draw_set(40, 7, STREAM_CORPUS, with_captions=True, progress=False)
    x3, *_ = draw_set(40, 8, STREAM_CORPUS, progress=False)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and c1 == c2
    assert not np.array_equal(x1, x3)
    classes, styles = list(CLASSES), list(STYLES)
    for cap, y in zip(c1, y1, strict=False):
        assert classes[y] in cap
    assert len(set(c1)) > 20  # templates, styles and colour words vary
    assert len({styles[s] for s in s1}) >= 6


@pytest.mark.parametrize("style", list(STYLES))
def test_every_class_renders_in_every_style(style):
    for cls in CLASSES:
        im, color = render(cls, style, image_rng(0, 5, style, cls, 0))
        arr = np.asarray(im)
        assert arr.shape == (64, 64, 3)
        assert arr.std() > 10, (cls, style)  # something was drawn on the background
        assert color in __import__("demo_world.render").render.COLORS


def _nearest_centroid_accuracy(style: str) -> float:
    xtr, ytr, _ = benchmark.load_arrays(20, styles=(style,), start=0)
    xte, yte, _ = benchmark.load_arrays(10, styles=(style,), start=20)

    def feat(x):  # 16x16 box-downsampled pixels
        return np.stack(
            [
                np.asarray(Image.fromarray(i).resize((16, 16), Image.BOX), np.float32).ravel() / 255
                for i in x
            ]
        )

    ftr, fte = feat(xtr), feat(xte)
    cent = np.stack([ftr[ytr == c].mean(0) for c in range(len(BENCHMARK_CLASSES))])
    pred = ((fte[:, None] - cent[None]) ** 2).sum(-1).argmin(1)
    return float((pred == yte).mean())


def test_classes_are_learnable_but_not_trivial():
    # Measured 0.50 (cartoon) and 0.51 (sketch) vs 1/7 = 0.14 chance: the shape carries the
    # class. Photo style (textured backgrounds) is near chance for raw pixels (0.26); the
    # shipped student's probe covers it (test_shipped.py).
    for style in ("cartoon", "sketch"):
        acc = _nearest_centroid_accuracy(style)
        assert 0.3 < acc < 0.9, (style, acc)


def test_ensure_demo_benchmark_writes_domainbed_layout(tmp_path, monkeypatch):
    # 3 images per class per style keeps this quick; the default (80) differs only in count
    monkeypatch.setenv("VL2V_DATA_DIR", str(tmp_path))
    root = assets.ensure_demo_benchmark(n_per_class=3, progress=False)
    assert root == tmp_path / f"{benchmark.BENCHMARK_NAME}-n3"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(BENCHMARK_STYLES)
    for s in BENCHMARK_STYLES:
        assert sorted(p.name for p in (root / s).iterdir()) == sorted(BENCHMARK_CLASSES)
        for c in BENCHMARK_CLASSES:
            assert sorted(p.name for p in (root / s / c).iterdir()) == [
                "0000.png",
                "0001.png",
                "0002.png",
            ]
    assert (root / "painting" / "fish" / "0002.png").read_bytes() == benchmark.png_bytes(
        "painting", "fish", 2
    )
    manifest = json.loads((root / "DATASET.json").read_text())
    assert manifest["seed"] == benchmark.BENCHMARK_SEED
    assert manifest["images_per_class_per_style"] == 3
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temp folder left
    mtime = root.stat().st_mtime_ns
    assert assets.ensure_demo_benchmark(n_per_class=3, progress=False) == root  # no rewrite
    assert root.stat().st_mtime_ns == mtime


def test_default_benchmark_location_and_name(tmp_path, monkeypatch):
    monkeypatch.setenv("VL2V_DATA_DIR", str(tmp_path / "d"))
    assert assets.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("VL2V_DATA_DIR")
    assert assets.default_data_dir() == assets.Path.home() / ".cache" / "vl2v" / "data"
    # an existing complete folder is returned as is, without generating anything
    (tmp_path / benchmark.BENCHMARK_NAME).mkdir()
    assert assets.ensure_demo_benchmark(tmp_path) == tmp_path / "vl2v-demo-pacs-v1"


def test_killed_generation_leaves_no_dataset(tmp_path, monkeypatch):
    calls = []

    def dies_halfway(root, **kw):
        (root / "photo" / "house").mkdir(parents=True)
        (root / "photo" / "house" / "0000.png").write_bytes(b"partial")
        calls.append(root)
        raise KeyboardInterrupt  # what a Ctrl-C mid-generation looks like

    monkeypatch.setattr(benchmark, "write_benchmark", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        assets.ensure_demo_benchmark(tmp_path, progress=False)
    assert calls and not (tmp_path / benchmark.BENCHMARK_NAME).exists()
    assert list(tmp_path.iterdir()) == []
