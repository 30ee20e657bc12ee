"""Tiny models and synthetic data for the algorithm tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from client_distiller.algorithms import BuildContext, WhiteBoxTeacher
from client_distiller.models import TimmBackbone
from client_distiller.train import PairData
from model_io import register_model_configs

CLASSES = ["house", "tree", "fish"]

EMBED_DIM = 32  # vl2v-tiny's embedding dim


def tiny_context(*, with_teacher: bool = False) -> BuildContext:
    """test_resnet student at 32 px, random class text embeddings, optional vl2v-tiny teacher."""
    gen = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(len(CLASSES), EMBED_DIM, generator=gen), dim=-1)
    white_box = None
    if with_teacher:
        import open_clip

        register_model_configs()  # vl2v-tiny is built in
        torch.manual_seed(0)
        clip = open_clip.create_model("vl2v-tiny", pretrained=None)
        white_box = WhiteBoxTeacher(
            visual=clip.visual.eval(),
            name="vl2v-tiny",
            image_size=32,
            mean=[0.48, 0.46, 0.41],
            std=[0.27, 0.26, 0.28],
        )
    return BuildContext(
        classes=CLASSES,
        class_text=text,
        logit_scale=20.0,
        student=TimmBackbone("test_resnet"),
        prompts=["a photo of a {}"],
        teacher_fingerprint="f" * 64,
        pretrained=False,
        input_size=32,
        white_box=white_box,
    )


def synthetic_pairs(n: int = 24, *, size: int = 32, seed: int = 0) -> PairData:
    """Colour-coded classes over two domains, with fake teacher embeddings per row."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % len(CLASSES)
    domain = (torch.arange(n) // 2) % 2
    x = torch.randint(0, 60, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    x[torch.arange(n), y] += 150  # class c lights up channel c
    t_img = F.normalize(torch.randn(n, EMBED_DIM, generator=gen), dim=-1)
    return PairData(x=x, y=y, domain=domain, t_img=t_img)
