"""open_clip architectures of the demo world (``demo_world/model_configs/*.json``).

``vl2v-demo-v3`` is the demo teacher's architecture (``vl2v-demo`` the version-2 one). The
random-weight test model ``vl2v-tiny`` ships with ``model_io`` (registered with these).
Registration is idempotent and must happen before ``open_clip.create_model_and_transforms``
is asked for one of these names.
"""

from __future__ import annotations

from pathlib import Path

from model_io import TINY_MODEL, register_model_configs

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"

__all__ = ["MODEL_CONFIG_DIR", "TINY_MODEL", "register_open_clip_configs"]


def register_open_clip_configs() -> None:
    """Make the demo's (and the built-in) open_clip architectures known to open_clip."""
    register_model_configs([MODEL_CONFIG_DIR])
