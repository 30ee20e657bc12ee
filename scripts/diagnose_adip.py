"""Why does (or doesn't) ADiP inherit the teacher's robustness? Source-domain evidence only.

For one leave-one-domain-out fold this reads the finished students of ``lodo_protocol.py``
(erm, kd, adip at a given rate) and measures, on the **source** styles only (their training
in-splits and validation out-splits; the held-out style's images are never loaded):

- each student's accuracy per source style (validation split) and the teacher's zero-shot;
- for ADiP after Align (projection only, photo-pretrained backbone frozen) and after Distill:
  the cosine between the student's embedding ``P f(x)`` and the teacher's image embedding of
  the same plain image, on training and on validation images, and how often the student's
  prediction agrees with the teacher's;

so one can tell whether the student fits the teacher's image embeddings on the styles it was
trained on (a precondition for inheriting them on an unseen one), and where it falls short.

    python scripts/diagnose_adip.py --root runs/lodo-v3 --target cartoon --lr 0.001 \
        --json docs/results/lodo-v3/diagnosis-cartoon.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from client_distiller.data import DomainFolder, load_image
from client_distiller.data.splits import make_splits
from client_distiller.models.student import Student, load_student
from client_distiller.teacher.local import LocalTeacher

REPO = Path(__file__).resolve().parents[1]


def _checkpoint(root: Path, algorithm: str, target: str, lr: str, stage: str) -> Path:
    run = root / "runs" / algorithm / "K4" / f"lr{lr}" / target / "s0" / "checkpoints" / target
    found = sorted(run.glob(f"*/{stage}.pt"))
    if not found:
        raise SystemExit(f"no {stage}.pt under {run}: run the grid first")
    return found[0]


@torch.no_grad()
def _student_outputs(student: Student, images: list, batch: int = 128) -> tuple[np.ndarray, ...]:
    logits, embeds = [], []
    for i in range(0, len(images), batch):
        x = student.preprocess(images[i : i + batch])
        feats = student.features(x)
        logits.append(student.head(feats))
        embeds.append(student.projection(feats))
    return torch.cat(logits).numpy(), torch.cat(embeds).numpy()


def diagnose(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    dataset = DomainFolder(args.data)
    splits = make_splits(dataset, args.target)
    teacher = LocalTeacher(
        model=args.teacher_model,
        pretrained=str(args.teacher),
        config_dirs=[REPO / "demo_world" / "model_configs"],
    )
    classes = dataset.classes
    prompts = [f"a photo of a {c}" for c in classes]
    text = F.normalize(torch.from_numpy(teacher.embed_texts(prompts)), dim=-1)

    parts = {"train": splits.train, "val": splits.val}
    images = {k: [load_image(s) for s in v] for k, v in parts.items()}
    labels = {k: np.array([s.label for s in v]) for k, v in parts.items()}
    domains = {k: np.array([s.domain for s in v]) for k, v in parts.items()}
    t_emb = {
        k: F.normalize(torch.from_numpy(teacher.embed_images(v)), dim=-1) for k, v in images.items()
    }
    t_pred = {k: (v @ text.T).argmax(1).numpy() for k, v in t_emb.items()}

    def per_domain(correct: np.ndarray, part: str) -> dict[str, float]:
        return {
            d: round(100 * float(correct[domains[part] == d].mean()), 1)
            for d in splits.source_domains
        }

    out: dict = {
        "target": args.target,
        "lr": args.lr,
        "source_domains": splits.source_domains,
        "n": {k: len(v) for k, v in parts.items()},
        "teacher_zeroshot_val": per_domain(t_pred["val"] == labels["val"], "val"),
        "students": {},
    }
    students = [("erm", "train"), ("kd", "train"), ("adip", "align"), ("adip", "distill")]
    for algorithm, stage in students:
        student = load_student(_checkpoint(args.root, algorithm, args.target, args.lr, stage))
        row: dict = {}
        for part in ("train", "val"):
            logits, embeds = _student_outputs(student, images[part])
            pred = logits.argmax(1)
            row[f"acc_{part}"] = per_domain(pred == labels[part], part)
            row[f"agrees_with_teacher_{part}"] = per_domain(pred == t_pred[part], part)
            if student.head_kind == "text":
                cos = (F.normalize(torch.from_numpy(embeds), dim=-1) * t_emb[part]).sum(1).numpy()
                row[f"cos_to_teacher_{part}"] = {
                    d: round(float(cos[domains[part] == d].mean()), 3)
                    for d in splits.source_domains
                }
        out["students"][f"{algorithm}/{stage}"] = row
        print(f"{algorithm}/{stage}: {json.dumps(row)}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--root", type=Path, default=REPO / "runs" / "lodo-v3")
    p.add_argument("--target", required=True, help="the fold's held-out style (never loaded)")
    p.add_argument("--lr", default="0.001", help="the grid rate whose students to read")
    p.add_argument("--data", type=Path, help="the benchmark (default ROOT/data/vl2v-demo-pacs-v1)")
    p.add_argument("--teacher-model", default="vl2v-demo-v3")
    p.add_argument(
        "--teacher", type=Path, default=REPO / "demo_world" / "weights" / "demo_teacher_v3.pt"
    )
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    args.root = args.root.resolve()
    args.data = args.data or args.root / "data" / "vl2v-demo-pacs-v1"
    result = diagnose(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
