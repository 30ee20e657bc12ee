"""``vendor-service`` CLI in process: keys and usage on the data dir, serve's refusals, --help."""

from __future__ import annotations

import json
import os

import pytest

from vendor_service.cli import main
from vendor_service.metering import SQLiteStore


@pytest.fixture(autouse=True)
def _isolated_environ(monkeypatch):
    # `serve` exports its settings as VENDOR_* env vars (for uvicorn workers); keep them here.
    monkeypatch.setattr(os, "environ", os.environ.copy())


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["serve"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "topup"],
        ["keys", "revoke"],
        ["usage"],
    ],
)
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: vendor-service" in capsys.readouterr().out


def test_keys_and_usage_work_on_the_data_dir(tmp_path, capsys):
    d = ["--data-dir", str(tmp_path)]
    assert main(["keys", "create", "--name", "bob", "--budget", "5", *d]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("vk_") and created["limit"] == 5

    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    assert store.authenticate(created["key"]).id == created["id"]
    store.charge(created["id"], 2, request_id="r1", endpoint="texts", owner="o")
    store.close()

    assert main(["keys", "topup", created["id"], "--queries", "10", *d]) == 0
    assert json.loads(capsys.readouterr().out)["limit"] == 15
    assert main(["keys", "list", *d]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["id"] for k in listed] == [created["id"]] and created["key"] not in str(listed)
    assert main(["usage", "--key-id", created["id"], *d]) == 0
    usage = json.loads(capsys.readouterr().out)
    assert usage["budget"] == {"limit": 15, "used": 2, "remaining": 13}
    assert usage["queries_by_endpoint"] == {"texts": 2}
    assert main(["keys", "revoke", created["id"], *d]) == 0
    assert json.loads(capsys.readouterr().out)["revoked"] is True
    assert main(["keys", "revoke", "key_nope", *d]) == 1
    assert main(["usage", "--key-id", "key_nope", *d]) == 1


def test_serve_requires_admin_token(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VENDOR_ADMIN_TOKEN", raising=False)
    assert main(["serve", "--model", "vl2v-tiny", "--data-dir", str(tmp_path)]) == 2
    assert "VENDOR_ADMIN_TOKEN" in capsys.readouterr().err


def test_serve_without_demo_checkpoint_names_the_build_command(tmp_path, monkeypatch, capsys):
    import demo_world.assets

    monkeypatch.setenv("VENDOR_ADMIN_TOKEN", "secret-admin")
    monkeypatch.setattr(demo_world.assets, "demo_teacher_checkpoint", lambda: tmp_path / "no.pt")
    assert main(["serve", "--model", "vl2v-demo-v3", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "python -m demo_world build-teacher" in err and "secret-admin" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "no-such-arch"], "unknown open_clip architecture"),
        (["--model", "vl2v-tiny", "--pretrained", "/nonexistent/w.pt"], "does not exist"),
    ],
)
def test_serve_refuses_unloadable_models_before_starting(
    tmp_path, monkeypatch, capsys, flags, message
):
    monkeypatch.setenv("VENDOR_ADMIN_TOKEN", "secret-admin")
    assert main(["serve", *flags, "--data-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
