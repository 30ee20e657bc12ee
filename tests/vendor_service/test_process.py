"""The one vendor launcher: knobs become ``serve`` flags derived from the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from vendor_service.cli import Serve, parse
from vendor_service.process import KNOB_FLAGS, settings_flags

SAMPLES = {
    "max_batch": 8,
    "batch_max_wait_ms": 2.5,
    "debug_delay_ms": 100.0,
    "max_items_per_request": 4,
    "rate_limit_rps": 1e6,
    "rate_limit_burst": 10**6,
    "pretrained": "openai",
    "config_dirs": [Path("/a"), Path("/b")],
    "description": "a card text",
    "price_per_image_query": 0.5,
    "inference_threads": 3,
    "log_level": "warning",
    "access_log": True,
}


def _value(cmd: Serve, knob: str):
    flag = KNOB_FLAGS[knob].removeprefix("--").replace("-", "_")
    node = cmd
    for part in flag.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize(("knob", "value"), SAMPLES.items())
def test_every_knob_is_a_serve_flag_that_sets_its_setting(knob, value):
    cmd = parse(["serve", *settings_flags({knob: value})])
    assert isinstance(cmd, Serve) and _value(cmd, knob) == value


def test_the_model_knob_names_the_architecture_and_bools_can_be_turned_off():
    cmd = parse(["serve", *settings_flags({"model": "vl2v-tiny", "access_log": False})])
    assert cmd.model.name == "vl2v-tiny" and cmd.access_log is False


def test_knobs_cover_every_setting_but_the_launchers_own():
    from vendor_service.settings import VendorOptions

    flags = set(KNOB_FLAGS.values())
    for group, field in VendorOptions.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        names = [f"{group}.{n}" for n in sub] if sub else [group]
        for name in names:
            flag = "--" + name.replace("_", "-")
            assert flag in flags or group in {"host", "port", "data_dir", "workers"}, flag


def test_unknown_knobs_are_refused():
    with pytest.raises(TypeError, match="unknown vendor knobs"):
        settings_flags({"max_bach": 8})
