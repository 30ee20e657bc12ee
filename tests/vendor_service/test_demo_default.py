"""The demo teacher is a default applied at the CLI edge; the rest of the vendor never needs it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vendor_service.inference.loading import ModelUnavailable
from vendor_service.settings import ModelSettings

VENDOR = Path(__file__).resolve().parents[2] / "vendor_service"
EDGE = VENDOR / "demo.py"


def test_missing_demo_checkpoint_is_a_clear_error(monkeypatch, tmp_path):
    import demo_world.assets
    from vendor_service.demo import with_default_model

    monkeypatch.setattr(demo_world.assets, "demo_teacher_checkpoint", lambda: tmp_path / "no.pt")
    with pytest.raises(ModelUnavailable, match="python -m demo_world build-teacher"):
        with_default_model(ModelSettings())
    assert with_default_model(ModelSettings(name="vl2v-tiny")).pretrained is None
    named = with_default_model(ModelSettings(name="ViT-B-32", pretrained="openai"))
    assert named.pretrained == "openai" and named.config_dirs == [] and named.description is None


def test_an_unnamed_model_is_the_demo_teacher_with_its_files(monkeypatch, tmp_path):
    import demo_world.assets
    from demo_world.assets import DEMO_TEACHER_DESCRIPTION, DEMO_TEACHER_MODEL
    from demo_world.models import MODEL_CONFIG_DIR
    from vendor_service.demo import with_default_model

    ckpt = tmp_path / "teacher.pt"
    ckpt.write_bytes(b"weights")
    monkeypatch.setattr(demo_world.assets, "demo_teacher_checkpoint", lambda: ckpt)
    extra = tmp_path / "configs"
    model = with_default_model(ModelSettings(device="cuda", config_dirs=[extra]))
    assert (model.name, model.pretrained) == (DEMO_TEACHER_MODEL, str(ckpt))
    assert model.config_dirs == [MODEL_CONFIG_DIR, extra]
    assert model.description == DEMO_TEACHER_DESCRIPTION
    assert model.device == "cuda"  # what was set for the unnamed model stays


def test_only_the_edge_module_imports_demo_world():
    importers = set()
    for path in VENDOR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(n.split(".")[0] == "demo_world" for n in names):
                importers.add(path)
    assert importers == {EDGE}


# Runs in a fresh interpreter in which `demo_world` cannot be imported at all.
_NO_DEMO = r"""
import importlib.abc, json, sys

class NoDemo(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "demo_world":
            raise ModuleNotFoundError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, NoDemo())
try:
    import demo_world  # noqa: F401
    raise SystemExit("the blocker does not block")
except ModuleNotFoundError:
    pass

from fastapi.testclient import TestClient

from vendor_service.app import create_app
from vendor_service.cli import parse, prepare_serve
from vendor_service.inference.loading import ModelUnavailable
from vendor_service.settings import VendorSettings

data_dir = sys.argv[1]
for argv in (
    ["serve", "--model.name", "ViT-B-32", "--model.pretrained", "openai"],  # open_clip's own
    ["serve", "--model.name", "vl2v-tiny"],  # the built-in test model
):
    prepare_serve(parse([*argv, "--data-dir", data_dir]).settings())
try:
    prepare_serve(parse(["serve", "--data-dir", data_dir]).settings())
    raise SystemExit("no model and no demo world, yet serve went on")
except ModelUnavailable as exc:
    unnamed = str(exc)

settings = VendorSettings(data_dir=data_dir, admin_token="t", model={"name": "vl2v-tiny"})
with TestClient(create_app(settings)) as client:  # the lifespan loads the model
    card = client.get("/v1/models").json()["data"][0]
print(json.dumps({
    "card": card,
    "unnamed": unnamed,
    "demo_modules": sorted(m for m in sys.modules if m.split(".")[0] == "demo_world"),
}))
"""


def test_serving_named_models_never_imports_demo_world(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _NO_DEMO, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=VENDOR.parent,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["demo_modules"] == []
    assert result["card"]["id"] == "vl2v-tiny" and result["card"]["embed_dim"] == 32
    assert "demo world is not installed" in result["unnamed"]
