"""The build commands run end to end at a tiny size and their outputs load through the real
code paths (open_clip ``pretrained=<path>``, timm ``pretrained_cfg_overlay=dict(file=...)``)."""

from __future__ import annotations

import open_clip
import pytest
import torch

from demo_world.__main__ import main
from demo_world.assets import DEMO_TEACHER_MODEL, create_demo_student
from demo_world.models import register_open_clip_configs


@pytest.mark.parametrize(
    "cmd",
    ["build-teacher", "build-student", "benchmark", "evaluate", "premise", "curve", "verify"],
)
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_build_teacher_tiny(tmp_path, capsys):
    out = tmp_path / "t.pt"
    assert (
        main(
            [
                "build-teacher",
                "--steps",
                "2",
                "--batch",
                "8",
                "--corpus",
                "24",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "sha256=" in capsys.readouterr().out
    sd = torch.load(out, weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    register_open_clip_configs()
    model, _, _ = open_clip.create_model_and_transforms(DEMO_TEACHER_MODEL, pretrained=str(out))
    got = model.state_dict()
    for k, v in sd.items():  # the trained values, not a fresh random init, were loaded
        assert torch.equal(got[k].to(v.dtype), v), k
    with torch.no_grad():
        emb = model.encode_image(torch.zeros(1, 3, 64, 64))
    assert emb.shape == (1, 64) and emb.dtype == torch.float32


def test_build_student_tiny(tmp_path):
    out = tmp_path / "s.pth"
    assert (
        main(
            [
                "build-student",
                "--steps",
                "2",
                "--batch",
                "8",
                "--images",
                "24",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    sd = torch.load(out, weights_only=True)
    feats = create_demo_student(num_classes=0, path=out)
    assert not any(k.startswith("classifier") for k in feats.state_dict())
    assert torch.equal(feats.state_dict()["conv_stem.weight"], sd["conv_stem.weight"])
    feats.eval()
    with torch.no_grad():
        # mobilenetv3 pools 576 channels into a 1024-wide conv head: timm's head_hidden_size
        assert feats(torch.zeros(2, 3, 64, 64)).shape == (2, feats.head_hidden_size) == (2, 1024)
    head = create_demo_student(num_classes=22, path=out)
    assert torch.equal(head.classifier.weight, sd["classifier.weight"])
