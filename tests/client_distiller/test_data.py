"""The dataset reader, splits and view bank on real image files."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from client_distiller.data import (
    DatasetError,
    DomainFolder,
    ViewBank,
    class_name_to_text,
    load_image,
    make_splits,
)
from tests.client_distiller.conftest import CLASSES, DOMAINS, make_dataset

REPO = Path(__file__).resolve().parents[2]


def _gradient(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) % 256], -1)


def _write_mixed(folder: Path) -> dict[str, str]:
    """One file per format/mode; returns name -> expected outcome ("ok" or "skip")."""
    folder.mkdir(parents=True)
    rgb = _gradient(20, 16).astype(np.uint8)
    expect = {}
    rgba = np.concatenate([rgb, np.full((16, 20, 1), 128, np.uint8)], -1)
    rgba[:4, :4, 3] = 0  # fully transparent corner -> white after compositing
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(folder / "palette.png")
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0
    pal_t.save(folder / "palette_transparent.png", transparency=0)
    pal.save(folder / "palette.gif")
    frames = [Image.fromarray(rgb).convert("P"), Image.fromarray(255 - rgb).convert("P")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(rgb[..., 0]).save(folder / "gray.jpg", quality=90)
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(folder / "deep16.png")
    Image.fromarray(rgb).save(folder / "plain.bmp")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(rgb).save(folder / "plain.tiff")
    expect.update(
        dict.fromkeys(
            [
                "rgba.png",
                "palette.png",
                "palette_transparent.png",
                "palette.gif",
                "animated.gif",
                "gray.jpg",
                "deep16.png",
                "plain.bmp",
                "cmyk.jpg",
                "plain.tiff",
            ],
            "ok",
        )
    )
    if features.check("webp"):
        Image.fromarray(rgb).save(folder / "plain.webp", lossless=True)
        expect["plain.webp"] = "ok"
    # Corrupt: a PNG cut in half, and random bytes with an image suffix.
    good = (folder / "plain.bmp").read_bytes()
    (folder / "truncated.png").write_bytes((folder / "rgba.png").read_bytes()[:60])
    (folder / "garbage.jpg").write_bytes(hashlib.sha256(good).digest() * 8)
    expect["truncated.png"] = expect["garbage.jpg"] = "skip"
    (folder / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    return expect


def test_reader_handles_mixed_formats_and_skips_corrupt(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    expected = _write_mixed(root / "d1" / "hot_air_balloon")
    _write_mixed(root / "d2" / "hot_air_balloon")
    ds = DomainFolder(root)
    assert ds.domains == ["d1", "d2"]
    assert ds.classes == ["hot_air_balloon"]
    assert ds.class_texts == ["hot air balloon"]
    ok = sorted(n for n, e in expected.items() if e == "ok")
    bad = sorted(n for n, e in expected.items() if e == "skip")
    d1 = [s for s in ds.samples if s.domain == "d1"]
    assert sorted(s.path.name for s in d1) == ok
    assert sorted(s.path.name for s in ds.skipped if s.path.parent.parent.name == "d1") == bad
    for s in ds.samples:
        img = load_image(s)
        assert img.mode == "RGB" and img.size == (20, 16), s.path.name
    by_name = {s.path.name: s for s in d1}
    # Transparent pixels are composited on white, not black.
    assert load_image(by_name["rgba.png"]).getpixel((0, 0)) == (255, 255, 255)
    # 16-bit data is scaled to 8 bits (not clipped to 255): it matches the 8-bit source.
    deep = np.asarray(load_image(by_name["deep16.png"]))[..., 0]
    assert np.array_equal(deep, _gradient(20, 16)[..., 1].astype(np.uint8))
    # Ids: stable content hash, distinct for the same bytes under a different relative path.
    ids = [s.id for s in ds.samples]
    assert len(set(ids)) == len(ids)
    assert ids == [s.id for s in DomainFolder(root).samples]


def test_reader_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        DomainFolder(tmp_path / "nope")
    root = make_dataset(tmp_path / "d", per_class=1)
    (root / "photo" / "extra_class").mkdir()
    with pytest.raises(DatasetError, match=r"differ across domains.*extra_class"):
        DomainFolder(root)
    (root / "photo" / "extra_class").rmdir()
    ds = DomainFolder(root)
    with pytest.raises(DatasetError, match="unknown domain 'art'"):
        make_splits(ds, "art")
    assert class_name_to_text("hot_air_balloon") == "hot air balloon"


def test_splits_are_seeded_disjoint_and_target_independent(tiny_dataset: Path) -> None:
    ds = DomainFolder(tiny_dataset)
    assert ds.domains == list(DOMAINS) and ds.classes == list(CLASSES)
    s = make_splits(ds, "sketch")
    assert s.source_domains == ["cartoon", "photo"]
    ids = lambda xs: [x.id for x in xs]
    assert {x.domain for x in s.train} == {"cartoon", "photo"}
    assert {x.domain for x in s.test + s.target_out} == {"sketch"}
    # 12 images per domain: int(12 * 0.2) = 2 out, 10 in.
    assert len(s.train) == 20 and len(s.val) == 4 and len(s.test) == 10
    assert not set(ids(s.train)) & set(ids(s.val))
    assert set(ids(s.test)) | set(ids(s.target_out)) == {x.id for x in ds.domain_samples("sketch")}
    # A domain is split the same way whichever domain is the target.
    other = make_splits(ds, "photo")
    assert [x.id for x in other.train if x.domain == "cartoon"] == [
        x.id for x in s.train if x.domain == "cartoon"
    ]
    assert ids(other.test) == [x.id for x in s.train if x.domain == "photo"]
    # The split seed changes the split.
    changed = make_splits(ds, "sketch", split_seed=1)
    assert ids(changed.val) != ids(s.val)


VIEW_SCRIPT = """
import hashlib, sys
from client_distiller.data import DomainFolder, ViewBank
ds = DomainFolder(sys.argv[1])
bank = ViewBank(4, size=32, seed=0)
h = hashlib.sha256()
for s in ds.samples[:6]:
    for v in bank.views(s):
        h.update(v.tobytes())
print(h.hexdigest())
"""


def test_view_bank_is_deterministic(tiny_dataset: Path) -> None:
    ds = DomainFolder(tiny_dataset)
    bank = ViewBank(4, size=32)
    s = ds.samples[0]
    views = bank.views(s)
    assert all(v.size == (32, 32) and v.mode == "RGB" for v in views)
    # Same bytes twice, through both entry points.
    assert [v.tobytes() for v in views] == [bank.view(s, i).tobytes() for i in range(4)]
    # Different indices differ; view 0 is the plain resize.
    assert len({v.tobytes() for v in views}) == 4
    plain = load_image(s).resize((32, 32), Image.Resampling.BICUBIC)
    assert views[0].tobytes() == plain.tobytes()
    # Another seed gives other augmented views but the same plain view.
    other = ViewBank(4, size=32, seed=1).views(s)
    assert other[0].tobytes() == views[0].tobytes() and other[1].tobytes() != views[1].tobytes()
    # Bit for bit in a fresh process.
    h = hashlib.sha256()
    for smp in ds.samples[:6]:
        for v in bank.views(smp):
            h.update(v.tobytes())
    out = subprocess.run(
        [sys.executable, "-c", VIEW_SCRIPT, str(tiny_dataset)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == h.hexdigest()
    with pytest.raises(IndexError):
        bank.view(s, 4)
