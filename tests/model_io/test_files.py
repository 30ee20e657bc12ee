"""Atomic checkpoint writes and the weights fingerprint."""

from __future__ import annotations

import torch

from model_io import atomic_save, state_dict_fingerprint


def test_atomic_save_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "ckpt.pt"
    assert atomic_save({"w": torch.zeros(3)}, path) == path
    atomic_save({"w": torch.ones(3)}, str(path))
    assert torch.equal(torch.load(path)["w"], torch.ones(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]


def test_fingerprint_covers_values_dtype_shape_and_names():
    base = torch.nn.Linear(4, 2)
    same = torch.nn.Linear(4, 2)
    same.load_state_dict(base.state_dict())
    assert state_dict_fingerprint(base) == state_dict_fingerprint(same)
    assert len(state_dict_fingerprint(base)) == 64
    changed = torch.nn.Linear(4, 2)
    changed.load_state_dict(base.state_dict())
    with torch.no_grad():
        changed.bias[0] += 1e-6
    assert state_dict_fingerprint(changed) != state_dict_fingerprint(base)
    assert state_dict_fingerprint(base.double()) != state_dict_fingerprint(same)
    renamed = torch.nn.Sequential(same)
    assert state_dict_fingerprint(renamed) != state_dict_fingerprint(same)
