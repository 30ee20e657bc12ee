"""open_clip architectures the project registers (``demo_world/model_configs/*.json``).

``vl2v-tiny`` is a random-weight model for tests; ``vl2v-demo`` is the demo teacher's
architecture. Registration is idempotent and must happen before
``open_clip.create_model_and_transforms`` is asked for one of these names.
"""

from __future__ import annotations

from pathlib import Path

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_MODEL = "vl2v-tiny"

_registered = False


def register_open_clip_configs() -> None:
    """Make the project's open_clip architectures known to open_clip (once per process)."""
    global _registered
    if _registered:
        return
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)
    _registered = True
