"""The vendor launcher for tests: ``vendor_service.process`` (the one implementation, also used
by ``make demo`` and the benchmarks), started from the repository root.

    with start_vendor(tmp_path, workers=2, max_batch=8) as vendor:
        key = vendor.create_key(100)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vendor_service.process import KNOB_FLAGS, VendorProcess, free_port, settings_flags
from vendor_service.process import start_vendor as _start_vendor

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "KNOB_FLAGS",
    "REPO_ROOT",
    "VendorProcess",
    "free_port",
    "settings_flags",
    "start_vendor",
]


def start_vendor(tmp_path: Path, **kwargs: Any) -> VendorProcess:
    """``vendor_service.process.start_vendor`` with the repository root as working directory."""
    kwargs.setdefault("cwd", REPO_ROOT)
    return _start_vendor(tmp_path, **kwargs)
