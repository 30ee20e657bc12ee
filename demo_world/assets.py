"""Where the shipped demo checkpoints and the demo benchmark live.

The demo-world build commands write these files; the vendor (default model) and the client
(default student, default dataset) read them through this module only.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"

#: open_clip architecture of the demo teacher (config in ``model_configs/``).
DEMO_TEACHER_MODEL = "vl2v-demo"


def demo_teacher_checkpoint() -> Path:
    """Path of the shipped demo teacher weights (an open_clip ``pretrained=`` file)."""
    return WEIGHTS_DIR / "demo_teacher.pt"
