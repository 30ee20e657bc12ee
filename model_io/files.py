"""Checkpoint files that a SIGKILL can never leave half-written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary sibling, then rename it over ``path``.

    A crash at any moment leaves either the old file or the new one, never a torn mix; the
    parent folder is created if needed.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path
