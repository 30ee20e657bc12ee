"""Pre-train the demo student: a timm ``mobilenetv3_small_100`` trained to classify the 22
classes of the world from PHOTO-style images only (the stand-in for ImageNet pre-training; it
never sees a sketch, cartoon, painting or any other style).

The shipped checkpoint is this module's output with the default arguments
(``python -m demo_world build-student``): a plain timm state dict (float32, with its 22-class
head) that loads through ``timm.create_model(..., pretrained=True,
pretrained_cfg_overlay=dict(file=...))``; see :func:`demo_world.assets.create_demo_student`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from demo_world.assets import (
    DEMO_STUDENT_MEAN,
    DEMO_STUDENT_MODEL,
    DEMO_STUDENT_STD,
    demo_student_checkpoint,
)
from demo_world.build_teacher import cosine_lr, images_to_tensor
from demo_world.corpus import STREAM_STUDENT, draw_set
from demo_world.render import CLASSES
from model_io import atomic_save

DEFAULT_STEPS = 1200
DEFAULT_BATCH = 128
DEFAULT_IMAGES = 20_000
DEFAULT_SEED = 0
DEFAULT_LR = 2e-3
PRETRAIN_STYLES = ("photo",)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random 56-64 px crop resized back to 64 (cheap, batched)."""
    n, _, h, w = x.shape  # (n, 3, h, w)
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    c = int(torch.randint(h - 8, h + 1, (1,), generator=gen))
    i, j = (int(v) for v in torch.randint(0, h - c + 1, (2,), generator=gen))
    return F.interpolate(
        x[:, :, i : i + c, j : j + c], size=(h, w), mode="bilinear", align_corners=False
    )  # (n, 3, h, w)


def build_student(
    out: Path | None = None,
    *,
    steps: int = DEFAULT_STEPS,
    batch: int = DEFAULT_BATCH,
    images: int = DEFAULT_IMAGES,
    seed: int = DEFAULT_SEED,
    lr: float = DEFAULT_LR,
    model_name: str = DEMO_STUDENT_MODEL,
    progress: bool = True,
) -> Path:
    """Render photo-style images of all classes, train a classifier on them, save its weights.

    Returns:
        The path written.
    """
    import timm

    out = Path(out) if out is not None else demo_student_checkpoint()
    torch.manual_seed(seed)
    t0 = time.time()
    ims, ys, _, _ = draw_set(
        images, seed, STREAM_STUDENT, styles=PRETRAIN_STYLES, progress=progress
    )
    labels = torch.from_numpy(ys)
    model = timm.create_model(model_name, pretrained=False, num_classes=len(CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(range(steps), desc="train student", disable=not progress, mininterval=2)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(100, steps // 10 + 1))
        idx = torch.randint(len(labels), (batch,), generator=gen)
        x = augment(images_to_tensor(ims[idx.numpy()], DEMO_STUDENT_MEAN, DEMO_STUDENT_STD), gen)
        logits = model(x)  # (batch, classes)
        loss = F.cross_entropy(logits, labels[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = (logits.argmax(1) == labels[idx]).float().mean().item()
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}")
    atomic_save({k: v.detach().clone() for k, v in model.state_dict().items()}, out)
    if progress:
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f} s")
    return out


def student_features(model: torch.nn.Module, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Frozen pooled features (n, num_features) of uint8 (n, 64, 64, 3) images."""
    model.eval()
    with torch.inference_mode():
        return torch.cat(
            [
                model(images_to_tensor(images[i : i + batch], DEMO_STUDENT_MEAN, DEMO_STUDENT_STD))
                for i in range(0, len(images), batch)
            ]
        ).float()
