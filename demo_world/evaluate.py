"""Measure the demo world: teacher zero-shot per benchmark style, and linear probes on the
student's frozen features and on the teacher's image embeddings, each trained on 3 styles and
tested on the 4th, next to the teacher's zero-shot accuracy on the same held-out style.

These are properties of the world (how good the teacher is, how well its image embeddings carry
across styles), measured before any distillation; :mod:`demo_world.premise` checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from demo_world.render import BENCHMARK_CLASSES, BENCHMARK_STYLES, STYLES

PROMPTS = {
    "photo": "a photo of a {cls}",
    "style": "a {style} of a {cls}",
}


@torch.inference_mode()
def teacher_image_embeddings(model, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Normalized image embeddings for uint8 (n, 64, 64, 3) images at the model's input size."""
    from demo_world.build_teacher import images_to_tensor

    model.eval()
    mean, std = model.visual.preprocess_cfg["mean"], model.visual.preprocess_cfg["std"]
    out = [
        F.normalize(model.encode_image(images_to_tensor(images[i : i + batch], mean, std)), dim=-1)
        for i in range(0, len(images), batch)
    ]
    return torch.cat(out).float()


@torch.inference_mode()
def class_text_embeddings(
    model, tokenizer, template: str, style: str, classes: Sequence[str] = BENCHMARK_CLASSES
) -> torch.Tensor:
    """One normalized text embedding per class for a prompt template."""
    noun = STYLES[style][1]
    texts = [template.format(cls=c.replace("_", " "), style=noun) for c in classes]
    return F.normalize(model.encode_text(tokenizer(texts)), dim=-1).float()


def zero_shot_accuracy(img_emb: torch.Tensor, txt_emb: torch.Tensor, labels: np.ndarray) -> float:
    """Fraction of images whose nearest class text embedding is the true class."""
    pred = (img_emb @ txt_emb.T).argmax(1).numpy()
    return float((pred == labels).mean())


def teacher_zero_shot(model, tokenizer, images, labels, styles_of, prompt: str) -> dict[str, float]:
    """Zero-shot accuracy per benchmark style for one prompt kind (``photo`` or ``style``)."""
    emb = teacher_image_embeddings(model, images)
    acc = {}
    for si, style in enumerate(BENCHMARK_STYLES):
        m = styles_of == si
        txt = class_text_embeddings(model, tokenizer, PROMPTS[prompt], style)
        acc[style] = zero_shot_accuracy(emb[m], txt, labels[m])
    return acc


def linear_probe(
    train_x: torch.Tensor,
    train_y: np.ndarray,
    test_x: torch.Tensor,
    n_classes: int,
    *,
    steps: int = 300,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> np.ndarray:
    """Multinomial logistic regression on standardized frozen features (full-batch Adam).

    Returns:
        Predicted class ids for ``test_x``.
    """
    torch.manual_seed(seed)
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6  # statistics of the training styles only
    xtr, xte = (train_x - mu) / sd, (test_x - mu) / sd  # (n, d)
    ytr = torch.from_numpy(np.asarray(train_y)).long()
    lin = torch.nn.Linear(xtr.shape[1], n_classes)
    opt = torch.optim.Adam(lin.parameters(), lr=0.01, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(lin(xtr), ytr)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return lin(xte).argmax(1).numpy()


def held_out_probes(
    feats: torch.Tensor, labels: np.ndarray, styles_of: np.ndarray
) -> dict[str, float]:
    """Linear-probe accuracy on each benchmark style, trained on the other three styles."""
    acc = {}
    for si, style in enumerate(BENCHMARK_STYLES):
        test, train = styles_of == si, styles_of != si
        pred = linear_probe(
            feats[torch.from_numpy(train)],
            labels[train],
            feats[torch.from_numpy(test)],
            len(BENCHMARK_CLASSES),
        )
        acc[style] = float((pred == labels[test]).mean())
    return acc


def in_style_probe(
    feats: torch.Tensor, labels: np.ndarray, styles_of: np.ndarray, style: str
) -> float:
    """Linear-probe accuracy within one style: trained on its even images, tested on the odd."""
    idx = np.flatnonzero(styles_of == BENCHMARK_STYLES.index(style))
    train, test = idx[0::2], idx[1::2]  # interleaved: every class on both sides
    pred = linear_probe(
        feats[torch.from_numpy(train)],
        labels[train],
        feats[torch.from_numpy(test)],
        len(BENCHMARK_CLASSES),
    )
    return float((pred == labels[test]).mean())


def evaluate_world(
    teacher: Path | None = None,
    student: Path | None = None,
    n_per_class: int = 80,
    start: int = 0,
    progress: bool = True,
    model_name: str | None = None,
) -> dict:
    """Measure the teacher and the student on the benchmark's images.

    Args:
        teacher: teacher weights (default: the shipped checkpoint).
        student: student weights (default: the shipped checkpoint).
        n_per_class: images per class per style, indices ``start .. start + n_per_class - 1``
            (the benchmark is indices 0..79; later indices are fresh images of the same world).
        start: first image index.
        progress: show progress bars.
        model_name: the teacher's open_clip architecture (default: the shipped teacher's).

    Returns:
        ``{"zero_shot": {prompt: {style: acc}}, "ood": {held_out: {"student_probe": acc,
        "teacher_probe": acc, "teacher_zero_shot": acc, "teacher_zero_shot_photo_prompt":
        acc}}, "in_style_probe": {"student_photo": acc, "teacher_photo": acc},
        "logit_scale": s, "n_per_class": n, "start": i, "teacher": {...}}``.
    """
    import open_clip

    from demo_world.assets import (
        DEMO_TEACHER_MODEL,
        create_demo_student,
        demo_teacher_checkpoint,
    )
    from demo_world.benchmark import load_arrays
    from demo_world.build_student import student_features
    from demo_world.build_teacher import create_teacher

    model_name = model_name or DEMO_TEACHER_MODEL
    teacher_path = Path(teacher) if teacher else demo_teacher_checkpoint()
    images, labels, styles_of = load_arrays(n_per_class, start=start, progress=progress)
    model, _ = create_teacher(model_name, str(teacher_path))
    tok = open_clip.get_tokenizer(model_name)
    zs = {p: teacher_zero_shot(model, tok, images, labels, styles_of, p) for p in PROMPTS}
    t_emb = teacher_image_embeddings(model, images)  # (n, d)
    net = create_demo_student(num_classes=0, pretrained=True, path=student)
    feats = student_features(net, images)  # (n, f)
    student_probe = held_out_probes(feats, labels, styles_of)
    teacher_probe = held_out_probes(t_emb, labels, styles_of)
    ood = {
        style: {
            "student_probe": student_probe[style],
            "teacher_probe": teacher_probe[style],
            "teacher_zero_shot": zs["style"][style],
            "teacher_zero_shot_photo_prompt": zs["photo"][style],
        }
        for style in BENCHMARK_STYLES
    }
    return {
        "zero_shot": zs,
        "ood": ood,
        "in_style_probe": {
            "student_photo": in_style_probe(feats, labels, styles_of, "photo"),
            "teacher_photo": in_style_probe(t_emb, labels, styles_of, "photo"),
        },
        "logit_scale": float(model.logit_scale.detach().exp()),
        "n_per_class": n_per_class,
        "start": start,
        "teacher": {"model": model_name, "file": teacher_path.name},
    }


def format_table(res: dict) -> str:
    """The evaluation as two markdown tables."""
    styles = list(res["zero_shot"]["photo"])
    lines = [
        (
            f"Teacher zero-shot accuracy per benchmark style ({res['n_per_class']} images per "
            f"class per style, from index {res['start']})"
        ),
        "",
        "| prompt | " + " | ".join(styles) + " | mean |",
        "|---|" + "---|" * (len(styles) + 1),
    ]
    for p, tpl in PROMPTS.items():
        row = [res["zero_shot"][p][s] for s in styles]
        lines.append(
            f"| `{tpl}` | "
            + " | ".join(f"{100 * a:.1f}" for a in row)
            + f" | {100 * sum(row) / len(row):.1f} |"
        )
    lines += [
        "",
        (
            "Held-out style: linear probes (trained on the other 3 styles) on the student's "
            "frozen features and on the teacher's image embeddings, vs the teacher's "
            "zero-shot accuracy on the same images"
        ),
        "",
        (
            "| held-out style | student probe | teacher probe | teacher zero-shot "
            "(`a {style} of a {class}`) | teacher zero-shot (`a photo of a {class}`) |"
        ),
        "|---|---|---|---|---|",
    ]
    keys = ("student_probe", "teacher_probe", "teacher_zero_shot", "teacher_zero_shot_photo_prompt")
    for s, r in res["ood"].items():
        lines.append(f"| {s} | " + " | ".join(f"{100 * r[k]:.1f}" for k in keys) + " |")
    means = [sum(r[k] for r in res["ood"].values()) / len(res["ood"]) for k in keys]
    lines.append("| mean | " + " | ".join(f"{100 * m:.1f}" for m in means) + " |")
    if "in_style_probe" in res:
        p = res["in_style_probe"]
        lines += [
            "",
            (
                f"Photo probe within the photo style (even images -> odd): student "
                f"{100 * p['student_photo']:.1f}, teacher {100 * p['teacher_photo']:.1f}; "
                f"teacher logit scale {res['logit_scale']:.1f}"
            ),
        ]
    return "\n".join(lines)
