"""Train the demo teacher: a small open_clip model, contrastively, on a freshly rendered
web-style caption corpus (all 22 classes x 10 styles).

Each teacher version is a :class:`TeacherRecipe` in :data:`RECIPES`; the shipped checkpoint is
this module's output with its recipe (``python -m demo_world build-teacher``), stored in float16,
and loads through ``open_clip.create_model_and_transforms(<model>, pretrained=<path>)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from demo_world.assets import DEMO_TEACHER_MODEL, demo_teacher_checkpoint
from demo_world.corpus import STREAM_CORPUS, corpus_style_weights, draw_set
from demo_world.models import register_open_clip_configs
from model_io import atomic_save


@dataclass(frozen=True)
class TeacherRecipe:
    """Everything that defines a teacher build besides the code (the corpus, captions, loss and
    optimizer are this module's and :mod:`demo_world.corpus`'s, shared by every version)."""

    version: int
    model: str  #: open_clip architecture (``demo_world/model_configs/<model>.json``)
    steps: int
    batch: int = 128
    corpus: int = 40_000
    seed: int = 0
    lr: float = 1e-3


#: v2: ViT image tower (8 px patches on 64 px images); underfits (issue 11's audit). Kept
#: loadable for comparison; its weights live in the git history, not in the package.
#: v3: ModifiedResNet image tower, one block per stage, width 16 (about 1.3 M parameters).
#: Its step count was chosen from the zero-shot curve on non-benchmark images (README).
RECIPES: dict[str, TeacherRecipe] = {
    "vl2v-demo": TeacherRecipe(version=2, model="vl2v-demo", steps=2500),
    DEMO_TEACHER_MODEL: TeacherRecipe(version=3, model=DEMO_TEACHER_MODEL, steps=2500),
}
RECIPE = RECIPES[DEMO_TEACHER_MODEL]
DEFAULT_STEPS = RECIPE.steps
DEFAULT_BATCH = RECIPE.batch
DEFAULT_CORPUS = RECIPE.corpus
DEFAULT_SEED = RECIPE.seed
DEFAULT_LR = RECIPE.lr


def soft_clip_loss(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, caption_ids: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE where pairs with the identical caption text count as positives.

    The corpus has few distinct captions relative to the batch, so plain CLIP targets would
    punish the model for matching an image to an equally true caption of another pair.

    Args:
        img: normalized image embeddings (n, d).
        txt: normalized text embeddings (n, d).
        scale: logit scale (already exponentiated).
        caption_ids: id of each pair's caption string (n,).
    """
    logits = scale * img @ txt.T  # (n, n)
    same = (caption_ids[:, None] == caption_ids[None, :]).float()  # (n, n), symmetric
    target = same / same.sum(1, keepdim=True)  # (n, n)
    loss_i = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(target * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (loss_i + loss_t) / 2


def cosine_lr(step: int, steps: int, base: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def create_teacher(name: str = DEMO_TEACHER_MODEL, pretrained: str | None = None):
    """``(model, preprocess)`` for an open_clip architecture the project registers."""
    import open_clip

    register_open_clip_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    return model, preprocess


def images_to_tensor(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 (n, h, w, 3) at the model's input size -> normalized float (n, 3, h, w)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # (n, 3, h, w)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def save_fp16(model: torch.nn.Module, out: Path) -> None:
    """Write the float16 state dict atomically (temp file, then rename)."""
    state = {
        k: v.detach().to(torch.float16) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    atomic_save(state, out)


def build_teacher(
    out: Path | None = None,
    *,
    recipe: TeacherRecipe = RECIPE,
    progress: bool = True,
    snapshot_every: int = 0,
) -> Path:
    """Render a caption corpus, train the teacher of ``recipe`` on it, save float16 weights.

    ``snapshot_every`` > 0 also saves ``<out>.step<N>`` every that many steps (for watching a
    long run; the final file is the same either way).

    Returns:
        The path written.
    """
    import open_clip

    out = Path(out) if out is not None else demo_teacher_checkpoint()
    steps, batch, seed, lr = recipe.steps, recipe.batch, recipe.seed, recipe.lr
    torch.manual_seed(seed)
    t0 = time.time()
    images, _, _, captions = draw_set(
        recipe.corpus,
        seed,
        STREAM_CORPUS,
        with_captions=True,
        style_weights=corpus_style_weights(),
        progress=progress,
    )
    model, _ = create_teacher(recipe.model)
    tokenizer = open_clip.get_tokenizer(recipe.model)
    tokens = tokenizer(captions)  # (corpus, ctx)
    uniq = {c: i for i, c in enumerate(sorted(set(captions)))}
    cap_ids = torch.tensor([uniq[c] for c in captions])
    mean, std = model.visual.preprocess_cfg["mean"], model.visual.preprocess_cfg["std"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(range(steps), desc="train teacher", disable=not progress, mininterval=2)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=min(100, steps // 10 + 1))
        idx = torch.randint(len(captions), (batch,), generator=gen)
        x = images_to_tensor(images[idx.numpy()], mean, std)
        img_f = F.normalize(model.encode_image(x), dim=-1)
        txt_f = F.normalize(model.encode_text(tokens[idx]), dim=-1)
        loss = soft_clip_loss(img_f, txt_f, model.logit_scale.exp(), cap_ids[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # as in CLIP: keep the temperature from exceeding 100
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        if snapshot_every and (step + 1) % snapshot_every == 0 and step + 1 < steps:
            save_fp16(model, out.with_suffix(out.suffix + f".step{step + 1}"))
    save_fp16(model, out)
    if progress:
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f} s")
    return out
