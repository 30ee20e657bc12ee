"""Where the shipped demo checkpoints and the demo benchmark live.

The demo-world build commands write these files; the vendor (default model) and the client
(default student, default dataset) read them through this module only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from demo_world.render import BENCHMARK_CLASSES, BENCHMARK_STYLES

WEIGHTS_DIR = Path(__file__).parent / "weights"

#: open_clip architecture of the demo teacher (config in ``model_configs/``), version 3.
DEMO_TEACHER_MODEL = "vl2v-demo-v3"
#: The version-2 teacher's architecture (a ViT); its config stays loadable for comparison.
LEGACY_TEACHER_MODEL = "vl2v-demo"

#: Model-card text for the demo teacher (the vendor shows it on ``GET /v1/models``).
DEMO_TEACHER_DESCRIPTION = (
    "vl2v-demo-v3: a small CLIP (image tower: open_clip's ModifiedResNet, one bottleneck block "
    "per stage, width 16, attention pooling, 64 px input; text transformer 3 layers x 64; "
    "64-d embeddings) trained contrastively by `python -m demo_world build-teacher` on 40,000 "
    "rendered images with web-style captions over the 22 classes x 10 styles (30 % photos) of "
    "the project's synthetic demo world. A stand-in for a real CLIP that only knows this "
    "world; not a general-purpose model."
)

__all__ = [
    "BENCHMARK_CLASSES",
    "BENCHMARK_STYLES",
    "DEMO_STUDENT_MODEL",
    "DEMO_TEACHER_DESCRIPTION",
    "DEMO_TEACHER_MODEL",
    "create_demo_student",
    "default_data_dir",
    "demo_student_checkpoint",
    "demo_teacher_checkpoint",
    "ensure_demo_benchmark",
]


def demo_teacher_checkpoint() -> Path:
    """Path of the shipped demo teacher weights (an open_clip ``pretrained=`` file)."""
    return WEIGHTS_DIR / "demo_teacher_v3.pt"


#: timm architecture of the demo student (fast forward+backward on CPU at 64 px).
DEMO_STUDENT_MODEL = "mobilenetv3_small_100"
#: Input normalization the student was pre-trained with (timm's ImageNet defaults).
DEMO_STUDENT_MEAN = (0.485, 0.456, 0.406)
DEMO_STUDENT_STD = (0.229, 0.224, 0.225)
DEMO_STUDENT_INPUT_SIZE = (3, 64, 64)


def demo_student_checkpoint() -> Path:
    """Path of the shipped demo student weights (a timm state dict with a 22-class head)."""
    return WEIGHTS_DIR / "demo_student.pth"


def demo_student_pretrained_cfg(path: Path | None = None) -> dict:
    """The ``pretrained_cfg_overlay`` that points timm at the demo student's weights file."""
    from demo_world.render import CLASSES

    return {
        "file": str(path or demo_student_checkpoint()),
        "num_classes": len(CLASSES),  # the file's head; timm drops it when num_classes differs
        "input_size": DEMO_STUDENT_INPUT_SIZE,
        "mean": DEMO_STUDENT_MEAN,
        "std": DEMO_STUDENT_STD,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "pool_size": (2, 2),
        # the stock cfg names ImageNet weights; these fields would misdescribe our file
        "url": "",
        "hf_hub_id": "",
        "tag": "vl2v_demo_photo22",
        "license": "MIT",
    }


def create_demo_student(num_classes: int = 0, pretrained: bool = True, path: Path | None = None):
    """The demo student through timm's own pretrained-loading path.

    Args:
        num_classes: classifier outputs; 0 gives the pooled features (the file's head is dropped).
        pretrained: load the shipped (or ``path``) weights.
        path: a different weights file (e.g. a rebuilt one).
    """
    import timm

    return timm.create_model(
        DEMO_STUDENT_MODEL,
        pretrained=pretrained,
        pretrained_cfg_overlay=demo_student_pretrained_cfg(path),
        num_classes=num_classes,
    )


def default_data_dir() -> Path:
    """``$VL2V_DATA_DIR``, else ``~/.cache/vl2v/data``."""
    env = os.environ.get("VL2V_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vl2v" / "data"


def ensure_demo_benchmark(
    root: Path | None = None, *, n_per_class: int | None = None, progress: bool = True
) -> Path:
    """The demo benchmark's folder (DomainBed layout), generated on first use.

    Generation writes into a temporary sibling folder and renames it into place, so a killed
    run never leaves a half-written dataset under the final name; concurrent callers each
    generate and the first rename wins.

    Args:
        root: data directory to hold the dataset folder (default :func:`default_data_dir`).
        n_per_class: images per class per style; anything but the design's 80 (for quick
            tests) goes to a folder named ``<BENCHMARK_NAME>-n<N>``.
        progress: show a progress bar while generating.

    Returns:
        ``root / BENCHMARK_NAME`` (versioned), containing ``<style>/<class>/<n>.png``.
    """
    from demo_world import benchmark

    n = benchmark.IMAGES_PER_CLASS if n_per_class is None else n_per_class
    name = benchmark.BENCHMARK_NAME
    if n != benchmark.IMAGES_PER_CLASS:
        name = f"{name}-n{n}"
    root = Path(root) if root is not None else default_data_dir()
    final = root / name
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        benchmark.write_benchmark(tmp, n_per_class=n, progress=progress)
        benchmark.write_manifest(tmp, n_per_class=n)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
