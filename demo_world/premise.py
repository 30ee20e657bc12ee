"""The demo world's premise: a teacher whose generalization is worth distilling.

Five criteria on the teacher and the student alone (no distillation involved), measured on the
benchmark by :func:`demo_world.evaluate.evaluate_world` and checked here against ERM's
out-of-distribution accuracy (the student fine-tuned on the source styles, which does not
depend on the teacher):

1. teacher zero-shot with ``a photo of a {}``: mean over the 4 styles >= 75 % and >= ERM's OOD
   mean + 15 points;
2. teacher zero-shot above ERM on every held-out style;
3. a linear probe on the teacher's image embeddings (3 styles -> the 4th) >= the same probe on
   the student's features + 15 points (mean over held-out styles);
4. teacher zero-shot on photos >= the student's probe on photos (both: held out, and within
   the photo style);
5. criterion 1's mean stays within +-3 points over the teacher seeds.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: ERM's per-style OOD accuracy comes from a results file of ``client-distiller run``.
ERM_ALGORITHM = "erm"


@dataclass(frozen=True)
class Criterion:
    """One criterion with what was measured and whether it holds."""

    number: int
    text: str
    measured: str
    passed: bool


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(list(values)))


def erm_ood_by_style(results: Path, *, views: str | None = None) -> dict[str, float]:
    """ERM's OOD accuracy per held-out style (mean over seeds) from a ``results.jsonl``.

    Args:
        results: JSON lines of ``client-distiller run``.
        views: only records with this view setting (ERM ignores the views; a file with several
            view settings repeats ERM under each).
    """
    acc: dict[str, list[float]] = defaultdict(list)
    for line in Path(results).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if r["algorithm"] != ERM_ALGORITHM or (views is not None and str(r["views"]) != views):
            continue
        acc[r["target"]].append(r["ood_acc"])
    if not acc:
        raise ValueError(f"no {ERM_ALGORITHM} records in {results}")
    return {style: _mean(v) for style, v in acc.items()}


def photo_prompt_mean(res: Mapping) -> float:
    """Criterion 1's number: mean zero-shot accuracy with ``a photo of a {}``."""
    return _mean(res["zero_shot"]["photo"].values())


def check_premise(evals: Sequence[Mapping], erm: Mapping[str, float]) -> list[Criterion]:
    """Check the five criteria.

    Args:
        evals: :func:`~demo_world.evaluate.evaluate_world` results, the shipped teacher first,
            then the other seeds' builds (criterion 5 needs at least 3).
        erm: ERM's OOD accuracy per held-out style.
    """
    res = evals[0]
    zs = res["zero_shot"]["photo"]
    styles = list(zs)
    missing = [s for s in styles if s not in erm]
    if missing:
        raise ValueError(f"ERM has no result with {', '.join(missing)} held out")
    erm_mean = _mean(erm[s] for s in styles)
    zs_mean = photo_prompt_mean(res)
    out = [
        Criterion(
            1,
            "teacher zero-shot (`a photo of a {}`), mean of 4 styles >= 75 % and >= ERM OOD + 15",
            f"{100 * zs_mean:.1f} vs ERM {100 * erm_mean:.1f} (+{100 * (zs_mean - erm_mean):.1f})",
            zs_mean >= 0.75 and zs_mean >= erm_mean + 0.15,
        )
    ]
    worst = min(styles, key=lambda s: zs[s] - erm[s])
    out.append(
        Criterion(
            2,
            "teacher zero-shot > ERM on every held-out style",
            ", ".join(f"{s} {100 * zs[s]:.1f} vs {100 * erm[s]:.1f}" for s in styles)
            + f" (smallest margin: {worst}, {100 * (zs[worst] - erm[worst]):+.1f})",
            all(zs[s] > erm[s] for s in styles),
        )
    )
    tp = _mean(r["teacher_probe"] for r in res["ood"].values())
    sp = _mean(r["student_probe"] for r in res["ood"].values())
    out.append(
        Criterion(
            3,
            "held-out-style linear probe: teacher embeddings >= student features + 15",
            f"{100 * tp:.1f} vs {100 * sp:.1f} (+{100 * (tp - sp):.1f})",
            tp >= sp + 0.15,
        )
    )
    held = res["ood"]["photo"]["student_probe"]
    within = res["in_style_probe"]["student_photo"]
    out.append(
        Criterion(
            4,
            "teacher zero-shot on photos >= student probe on photos",
            f"{100 * zs['photo']:.1f} vs {100 * held:.1f} (photo held out) and {100 * within:.1f} "
            "(probe within photos)",
            zs["photo"] >= held and zs["photo"] >= within,
        )
    )
    means = [photo_prompt_mean(e) for e in evals]
    spread = max(abs(m - means[0]) for m in means)
    out.append(
        Criterion(
            5,
            "criterion 1 within +-3 points over 3 teacher seeds",
            f"{len(means)} seeds: "
            + ", ".join(f"{100 * m:.1f}" for m in means)
            + f" (largest deviation from the shipped one {100 * spread:.1f})"
            + "; each >= 75 and >= ERM + 15: "
            + ("yes" if all(m >= 0.75 and m >= erm_mean + 0.15 for m in means) else "no"),
            len(means) >= 3
            and spread <= 0.03
            and all(m >= 0.75 and m >= erm_mean + 0.15 for m in means),
        )
    )
    return out


def format_premise(criteria: Sequence[Criterion]) -> str:
    """The criteria as a markdown table."""
    lines = ["| # | criterion | measured | holds |", "|---|---|---|---|"]
    lines += [
        f"| {c.number} | {c.text} | {c.measured} | {'yes' if c.passed else 'NO'} |"
        for c in criteria
    ]
    return "\n".join(lines)


def premise_json(criteria: Sequence[Criterion]) -> list[dict]:
    """The criteria as plain dicts (for ``--json``)."""
    return [asdict(c) for c in criteria]
