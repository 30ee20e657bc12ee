"""Fixtures of the client tests: small real image folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.synthetic import write_domainbed

#: The client tests' dataset: named like a small PACS (the class with an underscore checks
#: the prompt words), drawn by the one synthetic writer.
DOMAINS = ("cartoon", "photo", "sketch")
CLASSES = ("fish", "hot_air_balloon", "tree")


def make_dataset(root: Path, *, per_class: int = 4, size: int = 24, seed: int = 0) -> Path:
    """Write ``root/<domain>/<class>/<i>.png``: 3 domains x 3 classes of small real PNGs."""
    return write_domainbed(
        root, domains=DOMAINS, classes=CLASSES, per_class=per_class, size=size, seed=seed
    )


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """3 domains x 3 classes x 4 images (36 PNG files)."""
    return make_dataset(tmp_path / "data")
