"""The one open_clip loader and the card facts it states (``model_io.clip``)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from model_io import (
    TINY_MODEL,
    ModelLoadError,
    check_loadable,
    load_open_clip,
    state_dict_fingerprint,
)


@pytest.fixture(scope="module")
def tiny():
    return load_open_clip(TINY_MODEL)


def test_random_weights_are_seeded_and_leave_the_callers_rng_alone(tiny):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    again = load_open_clip(TINY_MODEL)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert again.fingerprint == tiny.fingerprint == state_dict_fingerprint(tiny.model)
    assert (tiny.trained, tiny.pretrained) == (False, None)


def test_the_model_is_frozen_in_eval_mode(tiny):
    assert not tiny.model.training
    assert not any(p.requires_grad for p in tiny.model.parameters())


def test_facts_of_the_builtin_tiny_model(tiny):
    assert (tiny.name, tiny.embed_dim, tiny.image_size, tiny.context_length) == (
        TINY_MODEL,
        32,
        32,
        16,
    )
    assert len(tiny.image_mean) == len(tiny.image_std) == 3
    assert tiny.logit_scale == pytest.approx(float(tiny.model.logit_scale.exp()))
    x = tiny.preprocess(Image.new("RGB", (50, 20)))
    assert tuple(x.shape) == (3, 32, 32)
    assert tuple(tiny.tokenizer(["a photo"]).shape) == (1, 16)


def test_a_checkpoint_is_labelled_by_its_file_name_only(tiny, tmp_path):
    ckpt = tmp_path / "weights.pt"
    torch.save(tiny.model.state_dict(), ckpt)
    loaded = load_open_clip(TINY_MODEL, pretrained=str(ckpt))
    assert (loaded.trained, loaded.pretrained) == (True, "weights.pt")
    assert loaded.fingerprint == tiny.fingerprint


def test_unloadable_models_are_one_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="unknown open_clip architecture"):
        check_loadable("no-such-arch")
    with pytest.raises(ModelLoadError, match="does not exist"):
        check_loadable(TINY_MODEL, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(ModelLoadError, match="config folder not found"):
        check_loadable(TINY_MODEL, config_dirs=[tmp_path / "no-configs"])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="could not load"):
        load_open_clip(TINY_MODEL, pretrained=str(bad))
    check_loadable("ViT-B-32", pretrained="openai")  # a tag is not a path: nothing to check


def test_a_config_dir_registers_a_custom_architecture(tmp_path):
    import json

    from model_io import BUILTIN_CONFIG_DIR

    config = json.loads((BUILTIN_CONFIG_DIR / f"{TINY_MODEL}.json").read_text())
    config["embed_dim"] = 16
    (tmp_path / "test-custom-16.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError):
        check_loadable("test-custom-16")
    loaded = load_open_clip("test-custom-16", config_dirs=[tmp_path])
    assert loaded.embed_dim == 16
