"""The Docker files agree with the code they package (fast; no Docker engine needed).

The full build-and-run check is ``scripts/compose-smoke.sh`` (``make smoke-compose``); these
tests catch the drift that would only show there: a renamed console script, setting, route or
CLI flag, a file missing from the build context, a compose key lost in an edit.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
VENDOR_DOCKERFILE = ROOT / "docker" / "vendor.Dockerfile"
CLIENT_DOCKERFILE = ROOT / "docker" / "client.Dockerfile"
GPU_OVERRIDE = ROOT / "docker" / "gpu.override.yml"
SMOKE = ROOT / "scripts" / "compose-smoke.sh"
TOKEN_GUARD = re.compile(r"^\$\{VENDOR_ADMIN_TOKEN:\?[^}]*set VENDOR_ADMIN_TOKEN in \.env[^}]*\}$")
DEFAULT = re.compile(r"^\$\{(\w+):-([^}]*)\}$")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD / ENTRYPOINT / HEALTHCHECK CMD."""
    return json.loads(args[args.index("[") :])


def with_defaults(value: str) -> str:
    """A compose value with its ``${VAR:-default}`` interpolations replaced by the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


# --- docker-compose.yml ----------------------------------------------------------------------


def test_vendor_service_publishes_8000_with_a_named_data_volume_and_restart_policy():
    spec = compose()
    vendor = spec["services"]["vendor"]
    assert vendor["build"]["dockerfile"] == "docker/vendor.Dockerfile"
    assert (ROOT / vendor["build"]["context"] / vendor["build"]["dockerfile"]).is_file()
    assert [with_defaults(p) for p in vendor["ports"]] == ["8000:8000"]
    volume, mount = vendor["volumes"][0].split(":")[:2]
    assert mount == "/data" and volume in spec["volumes"]
    assert vendor["environment"]["VENDOR_DATA_DIR"] == "/data"
    assert vendor["environment"]["HF_HOME"].startswith("/data/")
    assert vendor["restart"] in {"always", "unless-stopped", "on-failure"}


def test_admin_token_is_required_with_a_clear_message():
    spec = compose()
    for name in ("vendor", "demo"):
        token = spec["services"][name]["environment"]["VENDOR_ADMIN_TOKEN"]
        assert TOKEN_GUARD.match(token), token


def test_compose_healthcheck_is_the_images_healthcheck_on_readyz():
    vendor = compose()["services"]["vendor"]
    image_check = [args for word, args in instructions(VENDOR_DOCKERFILE) if word == "HEALTHCHECK"]
    assert len(image_check) == 1
    assert vendor["healthcheck"]["test"] == ["CMD", *exec_form(image_check[0])]
    assert "http://127.0.0.1:8000/readyz" in " ".join(vendor["healthcheck"]["test"])


def test_compose_env_vars_are_real_vendor_settings(monkeypatch):
    """Every VENDOR_* the compose file sets reaches VendorSettings (a typo would be ignored)."""
    from vendor_service.settings import VendorSettings

    env = compose()["services"]["vendor"]["environment"]
    vendor_env = {k: with_defaults(str(v)) for k, v in env.items() if k.startswith("VENDOR_")}
    vendor_env["VENDOR_ADMIN_TOKEN"] = "t0ken"
    for name, value in vendor_env.items():
        monkeypatch.setenv(name, value)
    settings = VendorSettings()
    for name, value in vendor_env.items():
        node = settings
        for part in name.removeprefix("VENDOR_").lower().split("__"):
            assert part in type(node).model_fields, f"{name}: no setting {part!r}"
            node = getattr(node, part)
        got = node.get_secret_value() if hasattr(node, "get_secret_value") else node
        if isinstance(got, list):  # a list setting is JSON in the environment
            assert [str(x) for x in got] == json.loads(value), (name, got, value)
            continue
        assert str(got) == value or float(got) == float(value), (name, got, value)


def test_compose_serves_the_demo_teacher_files_the_image_holds():
    """The default model is settings only: they name the files the Dockerfile copies, and
    the demo world's own architecture, checkpoint and card text."""
    from demo_world.assets import (
        DEMO_TEACHER_DESCRIPTION,
        DEMO_TEACHER_MODEL,
        demo_teacher_checkpoint,
    )
    from demo_world.models import MODEL_CONFIG_DIR

    env = {
        k: with_defaults(str(v)) for k, v in compose()["services"]["vendor"]["environment"].items()
    }
    assert env["VENDOR_MODEL__NAME"] == DEMO_TEACHER_MODEL
    assert env["VENDOR_MODEL__DESCRIPTION"] == DEMO_TEACHER_DESCRIPTION
    (config_dir,) = json.loads(env["VENDOR_MODEL__CONFIG_DIRS"])
    pretrained = env["VENDOR_MODEL__PRETRAINED"]
    copies = [a.split() for w, a in instructions(VENDOR_DOCKERFILE) if w == "COPY"]
    demo = next(c for c in copies if c[-1].rstrip("/") == config_dir)
    config = MODEL_CONFIG_DIR / f"{DEMO_TEACHER_MODEL}.json"
    assert sorted(demo[:-1]) == sorted(
        str(p.relative_to(ROOT)) for p in (config, demo_teacher_checkpoint())
    )
    assert pretrained == f"{config_dir}/{demo_teacher_checkpoint().name}"


def test_compose_command_parses_with_the_vendor_cli():
    from vendor_service.cli import parse

    command = [with_defaults(c) for c in compose()["services"]["vendor"]["command"]]
    assert command[0] in pyproject()["project"]["scripts"]
    args = parse(command[1:])
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 8000, 1)


def test_demo_profile_runs_the_client_against_the_vendor_by_its_compose_name():
    spec = compose()
    demo = spec["services"]["demo"]
    assert demo["profiles"] == ["demo"]
    assert demo["depends_on"]["vendor"]["condition"] == "service_healthy"
    assert demo["environment"]["VL2V_ENDPOINT"] == "http://vendor:8000"
    assert demo["build"]["dockerfile"] == "docker/client.Dockerfile"
    from client_distiller.cli import build_parser

    command = demo.get("command") or exec_form(
        [a for w, a in instructions(CLIENT_DOCKERFILE) if w == "CMD"][-1]
    )
    command = [with_defaults(str(c)) for c in command]
    assert command[0] == "client-distiller"
    build_parser().parse_args(command[1:])  # SystemExit(2) on an unknown subcommand or flag


def test_gpu_override_reserves_a_gpu_for_the_vendor():
    override = yaml.safe_load(GPU_OVERRIDE.read_text())
    devices = override["services"]["vendor"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "cu" in override["services"]["vendor"]["build"]["args"]["TORCH_INDEX_URL"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_v1_accepts_the_files_and_refuses_a_missing_token(tmp_path):
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    files = ["-f", str(COMPOSE), "-f", str(GPU_OVERRIDE)]
    ok = subprocess.run(
        ["docker-compose", "--project-directory", str(ROOT), *files, "config", "-q"],
        env={**env, "VENDOR_ADMIN_TOKEN": "x"},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        ["docker-compose", "--project-directory", str(ROOT), "-f", str(COMPOSE), "config", "-q"],
        env={**env, "VENDOR_ADMIN_TOKEN": ""},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "set VENDOR_ADMIN_TOKEN in .env, see README" in missing.stderr


# --- Dockerfiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [VENDOR_DOCKERFILE, CLIENT_DOCKERFILE], ids=lambda p: p.name)
def test_dockerfile_base_image_arg_and_every_stage_uses_it(path):
    steps = instructions(path)
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = [args for word, args in steps if word == "FROM"]
    assert froms and all(f.split()[0] == "${BASE_IMAGE}" for f in froms)
    assert any(w == "USER" and a not in {"root", "0"} for w, a in steps), "runs as root"
    assert any(w == "RUN" and "python3 -m venv /opt/venv" in a for w, a in steps)


@pytest.mark.parametrize("path", [VENDOR_DOCKERFILE, CLIENT_DOCKERFILE], ids=lambda p: p.name)
def test_dockerfile_copies_existing_files_the_dockerignore_lets_through(path):
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for word, args in instructions(path):
        if word == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                assert (ROOT / src).exists(), src
                top = src.rstrip("/").split("/")[0]
                assert top in allowed, f"{src} is excluded from the build context"


def test_vendor_dockerfile_installs_the_vendor_extra_and_serves_with_the_vendor_cli():
    from vendor_service.cli import Serve, parse

    steps = instructions(VENDOR_DOCKERFILE)
    extras = pyproject()["project"]["optional-dependencies"]
    installs = [a for w, a in steps if w == "RUN" and '"/tmp/src[' in a]
    assert len(installs) == 1 and '"/tmp/src[vendor]"' in installs[0] and "vendor" in extras
    cmd = exec_form([a for w, a in steps if w == "CMD"][-1])
    assert cmd[0] in pyproject()["project"]["scripts"]
    args = parse(cmd[1:])
    assert isinstance(args, Serve) and (args.host, args.port) == ("0.0.0.0", 8000)
    env = " ".join(a for w, a in steps if w == "ENV")
    assert "VENDOR_DATA_DIR=/data" in env
    assert ("VOLUME", '["/data"]') in steps


def test_healthcheck_route_is_a_real_route_of_the_vendor_app(tmp_path):
    """Asked in process without the lifespan (no model): /readyz answers 503, not 404."""
    import asyncio

    import httpx

    from vendor_service.app import create_app
    from vendor_service.settings import VendorSettings

    check = exec_form(next(a for w, a in instructions(VENDOR_DOCKERFILE) if w == "HEALTHCHECK"))
    path = re.search(r"http://127\.0\.0\.1:8000(/\w+)", " ".join(check)).group(1)
    app = create_app(VendorSettings(data_dir=tmp_path, admin_token="t"))

    async def get(url: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.get(url)).status_code

    assert asyncio.run(get("/no-such-route")) == 404
    assert path == "/readyz" and asyncio.run(get(path)) == 503


def test_vendor_image_packages_hold_everything_vendor_service_imports():
    """The image copies only some top-level packages; vendor_service must not import others
    (but for its demo edge, ``vendor_service/demo.py``: the image has the teacher's files, not
    the demo world's code)."""
    copied = {
        args.split()[0].rstrip("/")
        for word, args in instructions(VENDOR_DOCKERFILE)
        if word == "COPY" and args.split()[-1].startswith("/tmp/src/") and "--from" not in args
    }
    project = set(pyproject()["tool"]["setuptools"]["packages"]["find"]["include"])
    project = {p.rstrip("*") for p in project}
    imported = set()
    for path in (ROOT / "vendor_service").rglob("*.py"):
        if path == ROOT / "vendor_service" / "demo.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
    needed = imported & project
    assert "vendor_service" in copied and needed <= copied, needed - copied
    assert "demo_world" not in copied


def test_demo_teacher_is_package_data_of_demo_world():
    """The vendor image serves the shipped teacher, so the wheel must carry demo_world/weights."""
    from demo_world.assets import demo_teacher_checkpoint

    rel = demo_teacher_checkpoint().relative_to(ROOT)
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["*"]
    assert any(Path(rel.name).match(p) for p in patterns), (rel, patterns)
    # pyproject-configured find is namespace-aware, so weights/ (no __init__.py) is a package.
    from setuptools import find_namespace_packages

    assert ".".join(rel.parent.parts) in find_namespace_packages(str(ROOT), include=["demo_world*"])


# --- scripts ---------------------------------------------------------------------------------


def test_smoke_script_is_valid_bash_and_wired_into_make():
    subprocess.run(["bash", "-n", str(SMOKE)], check=True, timeout=30)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^smoke-compose:\n\tbash scripts/compose-smoke\.sh$", makefile, re.MULTILINE)
    entry = ROOT / "docker" / "demo-entrypoint.sh"
    subprocess.run(["sh", "-n", str(entry)], check=True, timeout=30)


def test_env_example_sets_every_variable_the_compose_file_requires():
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = (ROOT / ".env.example").read_text()
    assigned = set(re.findall(r"^(\w+)=", example, re.MULTILINE))
    assert required and required <= assigned, required - assigned
    commented = set(re.findall(r"^# ?(\w+)=", example, re.MULTILINE))
    optional = set(re.findall(r"\$\{(\w+):-", text))
    assert optional <= assigned | commented, optional - assigned - commented
