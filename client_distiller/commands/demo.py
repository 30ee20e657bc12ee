"""The demo world as configuration, applied at the command line's edge.

This is the one module of ``client_distiller`` that names ``demo_world``: ``--data demo`` (the
generated benchmark), ``--student demo`` (the shipped photo-pretrained student) and the
default ``--clip-config-dirs`` (the demo teachers' open_clip architectures)
resolve here into the explicit things the libraries take: a dataset folder, a timm backbone
with its weights file, open_clip config folders. The libraries themselves never import the
demo.
"""

from __future__ import annotations

from pathlib import Path

from client_distiller.models.student import TimmBackbone

#: The value of ``--data`` and ``--student`` that means the demo world's.
DEMO = "demo"


def clip_config_dirs() -> list[Path]:
    """The demo's open_clip model configs (the teachers ``vl2v-demo-v3`` and ``vl2v-demo``)."""
    try:
        from demo_world.models import MODEL_CONFIG_DIR
    except ImportError:  # a client installed without the demo world
        return []
    return [MODEL_CONFIG_DIR]


def benchmark_folder(data_dir: Path, *, progress: bool = True) -> Path:
    """The demo benchmark's folder under ``data_dir``, generated there on first use (~20 s)."""
    from demo_world import assets

    return Path(assets.ensure_demo_benchmark(root=data_dir, progress=progress))


def student(weights: Path | None = None) -> TimmBackbone:
    """The demo student: timm's ``mobilenetv3_small_100`` pretrained on the demo's photos.

    Its weights load through timm's own pretrained path (a ``pretrained_cfg_overlay`` naming
    the file); checkpoints store only the timm architecture, so they load without the demo.
    Results and checkpoint folders name it ``{"kind": "demo"}`` (with ``weights`` when a
    rebuilt file is used instead of the shipped one).

    Args:
        weights: a rebuilt weights file instead of the shipped one.
    """
    from demo_world import assets

    label: dict[str, str] = {"kind": DEMO}
    if weights is not None:
        weights = weights.resolve()
        label["weights"] = str(weights)
    return TimmBackbone(
        assets.DEMO_STUDENT_MODEL,
        pretrained_cfg_overlay=assets.demo_student_pretrained_cfg(weights),
        label=label,
    )
