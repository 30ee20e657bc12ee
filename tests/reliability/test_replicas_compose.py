"""The compose `scale` profile agrees with the code (fast, no Docker engine needed): PostgreSQL,
a migration step, three replicas on one ledger, HAProxy checking each replica's /readyz.

The build-and-run check is ``SMOKE_SCALE=1 scripts/compose-smoke.sh``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from vendor_service.cli import DbUpgrade, Serve, parse

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
HAPROXY = ROOT / "docker" / "haproxy.cfg"
REPLICAS = ["vendor-1", "vendor-2", "vendor-3"]


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _defaults(value: str) -> str:
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_scale_services_are_in_the_scale_profile_only() -> None:
    svc = services()
    for name in ["postgres", "migrate", *REPLICAS, "lb"]:
        assert svc[name]["profiles"] == ["scale"], name
    assert "profiles" not in svc["vendor"]  # the single-vendor quick start is unchanged
    published = [name for name, s in svc.items() if s.get("ports")]
    assert sorted(published) == ["lb", "vendor"]  # replicas and the database stay inside
    assert "ledger-pg:/var/lib/postgresql/data" in svc["postgres"]["volumes"]
    assert "ledger-pg" in yaml.safe_load(COMPOSE.read_text())["volumes"]


def test_replicas_share_the_database_and_run_after_the_migration() -> None:
    svc = services()
    pg = svc["postgres"]["environment"]
    url = f"postgresql://{pg['POSTGRES_USER']}@postgres:5432/{pg['POSTGRES_DB']}"
    for name in ["migrate", *REPLICAS]:
        env = svc[name]["environment"]
        assert env["VENDOR_DATABASE_URL"] == url, name
        assert _defaults(env["PGPASSWORD"]) == _defaults(pg["POSTGRES_PASSWORD"])
    assert svc["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in REPLICAS:
        s = svc[name]
        assert s["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        # the single vendor's settings (model, admin token, batching) plus the database
        assert set(svc["vendor"]["environment"]) <= set(s["environment"])
        assert "readyz" in " ".join(s["healthcheck"]["test"])


def test_migrate_and_replica_commands_parse_with_the_vendor_cli(monkeypatch) -> None:
    svc = services()
    assert svc["migrate"]["command"][:1] == ["vendor-service"]
    monkeypatch.setenv("VENDOR_DATABASE_URL", "postgresql://vendor@postgres:5432/vendor")
    cmd = parse(svc["migrate"]["command"][1:])
    assert isinstance(cmd, DbUpgrade) and cmd.database_url.endswith("/vendor")
    for name in REPLICAS:
        argv = [_defaults(a) for a in svc[name]["command"][1:]]
        serve = parse(argv)
        assert isinstance(serve, Serve) and serve.database_url.startswith("postgresql://")


def test_haproxy_balances_every_replica_and_checks_readyz() -> None:
    cfg = HAPROXY.read_text()
    servers = re.findall(r"^\s*server (\S+) (\S+):8000 check", cfg, re.MULTILINE)
    assert [s for s, _ in servers] == REPLICAS and [h for _, h in servers] == REPLICAS
    assert re.search(r"option httpchk GET /readyz", cfg)
    lb = services()["lb"]
    port = _defaults(lb["ports"][0]).split(":")[-1]
    assert re.search(rf"bind :{port}\b", cfg)
    assert "/lb-healthz" in " ".join(lb["healthcheck"]["test"]) and "monitor-uri /lb-healthz" in cfg


def test_haproxy_config_is_valid_for_haproxy_itself(tmp_path) -> None:
    haproxy = Path("/usr/sbin/haproxy")
    if not haproxy.exists():
        pytest.skip("haproxy not installed here (the smoke script runs it in its container)")
    # The replicas' names only resolve inside compose: check with them mapped to loopback.
    cfg = tmp_path / "h.cfg"
    cfg.write_text(re.sub(r"vendor-\d:8000", "127.0.0.1:8000", HAPROXY.read_text()))
    subprocess.run([str(haproxy), "-c", "-q", "-f", str(cfg)], check=True, timeout=30)


def test_docker_compose_accepts_the_scale_profile(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path), "VENDOR_ADMIN_TOKEN": "x"}
    out = subprocess.run(
        ["docker-compose", "--project-directory", str(ROOT), "-f", str(COMPOSE), "--profile",
         "scale", "config"],
        env=env, check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if out.returncode != 0 and "No such file" in out.stderr:
        pytest.skip("docker-compose not installed")
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)["services"]
    for name in REPLICAS:
        assert resolved[name]["environment"]["VENDOR_ADMIN_TOKEN"] == "x"
        assert resolved[name]["environment"]["VENDOR_DATABASE_URL"].startswith("postgresql://")
