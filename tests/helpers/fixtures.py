"""pytest fixtures around ``start_vendor``; import them into a conftest or test module:

from tests.helpers.fixtures import vendor, vendor_factory  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.vendor_process import VendorProcess, start_vendor


@pytest.fixture
def vendor_factory(tmp_path: Path) -> Iterator[Callable[..., VendorProcess]]:
    """Start vendors with custom knobs (``vendor_factory(workers=2, max_batch=8)``); all are
    stopped at teardown. Each call gets its own data dir under tmp_path."""
    started: list[VendorProcess] = []

    def make(**kwargs: Any) -> VendorProcess:
        sub = tmp_path / f"vendor{len(started)}"
        sub.mkdir()
        vendor = start_vendor(sub, **kwargs)
        started.append(vendor)
        return vendor

    yield make
    for vendor in started:
        vendor.stop()


@pytest.fixture
def vendor(vendor_factory: Callable[..., VendorProcess]) -> VendorProcess:
    """One vendor with the tiny random-weight model, 1 worker."""
    return vendor_factory()
