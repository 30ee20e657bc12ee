"""Shared pytest configuration: CPU-only, offline, small thread counts."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-reliability",
        action="store_true",
        default=False,
        help="run the full reliability suite (make reliability)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-reliability"):
        return
    skip = pytest.mark.skip(reason="full reliability suite: run `make reliability`")
    for item in items:
        # The marker, not ``item.keywords``: keywords also hold path parts (tests/reliability/).
        if item.get_closest_marker("reliability") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _torch_cpu_settings():
    try:
        import torch
    except ImportError:  # schema-only environments
        yield
        return
    torch.set_flush_denormal(True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
