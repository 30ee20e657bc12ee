"""``vendor-service`` CLI in process: keys and usage on the data dir, serve's refusals, --help."""

from __future__ import annotations

import json
import os

import pytest

from shared_schemas import KeyCreateResponse
from vendor_service.cli import main
from vendor_service.metering import SQLiteStore


@pytest.fixture(autouse=True)
def _isolated_environ(monkeypatch):
    # `serve` exports its validated settings (VENDOR_SERVE_SETTINGS_JSON, for uvicorn workers).
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
    # A dir without a ledger gets one only when asked (a typo in --data-dir must not).
    assert main(["keys", "create", "--name", "bob", "--budget", "5", *d]) == 2
    assert "no ledger at" in capsys.readouterr().err
    assert main(["keys", "create", "--name", "bob", "--budget", "5", "--create-ledger", *d]) == 0
    # the shape of POST /v1/admin/keys
    created = KeyCreateResponse.model_validate_json(capsys.readouterr().out).model_dump()
    assert created["key"].startswith("vk_") and created["info"]["budget"]["limit"] == 5
    created["id"] = created["info"]["id"]

    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    assert store.authenticate(created["key"]).id == created["id"]
    store.charge(created["id"], 2, request_id="r1", endpoint="texts", owner="o")
    store.close()

    assert main(["keys", "topup", created["id"], "--queries", "10", *d]) == 0
    assert json.loads(capsys.readouterr().out)["budget"]["limit"] == 15
    assert main(["keys", "list", *d]) == 0
    listed = json.loads(capsys.readouterr().out)["data"]
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
    assert main(["serve", "--model.name", "vl2v-tiny", "--data-dir", str(tmp_path)]) == 2
    assert "VENDOR_ADMIN_TOKEN" in capsys.readouterr().err


def test_serve_without_demo_checkpoint_names_the_build_command(tmp_path, monkeypatch, capsys):
    import demo_world.assets

    monkeypatch.setenv("VENDOR_ADMIN_TOKEN", "secret-admin")
    monkeypatch.setattr(demo_world.assets, "demo_teacher_checkpoint", lambda: tmp_path / "no.pt")
    assert main(["serve", "--data-dir", str(tmp_path)]) == 2  # no model: the demo teacher
    err = capsys.readouterr().err
    assert "python -m demo_world build-teacher" in err and "secret-admin" not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model.name", "no-such-arch"], "unknown open_clip architecture"),
        (["--model.name", "vl2v-tiny", "--pretrained", "/nonexistent/w.pt"], "does not exist"),
        (["--model.name", "vl2v-tiny", "--model.pretrained", "/nonexistent/w.pt"], "not exist"),
    ],
)
def test_serve_refuses_unloadable_models_before_starting(
    tmp_path, monkeypatch, capsys, flags, message
):
    monkeypatch.setenv("VENDOR_ADMIN_TOKEN", "secret-admin")
    assert main(["serve", *flags, "--data-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_serve_help_shows_every_flag_with_its_help_and_default(capsys):
    import re

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    options = capsys.readouterr().out.split("options:", 1)[1]
    # one entry per flag: its line and the help lines indented under it
    entries = {
        m.group(1): " ".join(m.group(2).split())
        for m in re.finditer(r"^  (--\S+)(.*?)(?=^  -|^\S|\Z)", options, re.MULTILINE | re.DOTALL)
    }
    for flag, default in [
        ("--host", "127.0.0.1"),
        ("--port", "8000"),
        ("--log-level", "info"),
        ("--workers", "1"),
        ("--data-dir", "vendor-data"),
        ("--batch.max-batch", "32"),
        ("--rate-limit.rps", "50.0"),
        ("--model.name", "None"),
    ]:
        assert f"(default: {default})" in entries[flag], (flag, entries[flag])
    assert "--max-batch int" in entries["--batch.max-batch"]  # the old spelling, an alias
    assert len(entries) > 25
    for flag, text in entries.items():
        # a help text, then the default
        assert re.search(r"\w.*\(default: .+\)", text), (flag, text)
    assert "admin-token" not in options and "instance-id" not in options  # env-only


def test_flags_and_env_vars_set_the_same_settings(monkeypatch, tmp_path):
    from vendor_service.cli import Serve, parse

    monkeypatch.setenv("VENDOR_BATCH__MAX_BATCH", "7")
    monkeypatch.setenv("VENDOR_ADMIN_TOKEN", "tok")
    monkeypatch.setenv("VENDOR_WORKERS", "3")
    cmd = parse(["serve", "--max-wait-ms", "2", "--rate-limit.burst", "9", "--no-access-log"])
    assert isinstance(cmd, Serve)
    assert (cmd.batch.max_batch, cmd.batch.max_wait_ms, cmd.rate_limit.burst) == (7, 2.0, 9)
    assert (cmd.workers, cmd.access_log) == (3, False)
    assert cmd.settings().admin_token.get_secret_value() == "tok"
    flag = parse(["serve", "--batch.max-batch", "5", "--model.config-dirs", f'["{tmp_path}"]'])
    assert flag.batch.max_batch == 5 and flag.model.config_dirs == [tmp_path]  # flag beats env
    with pytest.raises(SystemExit):
        parse(["serve", "--admin-token", "x"])  # secrets are never flags


def test_validated_settings_reach_workers_without_the_admin_token(monkeypatch, tmp_path):
    from vendor_service.settings import SETTINGS_ENV, VendorSettings

    settings = VendorSettings(
        data_dir=tmp_path, admin_token="very-secret", model={"name": "vl2v-tiny"}, port=1234
    )
    handed = settings.to_env()
    assert "very-secret" not in handed
    monkeypatch.setenv(SETTINGS_ENV, handed)
    monkeypatch.setenv("VENDOR_ADMIN_TOKEN", "very-secret")
    monkeypatch.setenv("VENDOR_PORT", "1")  # the handed-down settings win over env vars
    worker = VendorSettings.from_env()
    assert worker.model_dump() == settings.model_dump()
    assert worker.admin_token.get_secret_value() == "very-secret"


def test_bad_values_are_one_line_errors(tmp_path, capsys):
    d = ["--data-dir", str(tmp_path)]
    assert main(["keys", "create", "--name", "a", "--budget", "-1", *d]) == 2
    assert main(["serve", "--port", "99999", *d]) == 2
    err = capsys.readouterr().err
    assert "error: --budget:" in err and "error: --port:" in err and "Traceback" not in err
    assert not (tmp_path / "ledger.sqlite3").exists()
    assert main([]) == 2 and main(["keys"]) == 2
    err = capsys.readouterr().err
    assert "error: a subcommand is required" in err and "error: `keys` needs a subcommand" in err


def test_key_commands_read_only_the_data_dir_from_the_environment(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VENDOR_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("VENDOR_BUDGET", "7")  # a command's arguments are flags, not env vars
    monkeypatch.setenv("VENDOR_NAME", "from-env")
    assert main(["keys", "create"]) == 2
    assert "error: --name: Field required" in capsys.readouterr().err
    assert main(["keys", "create", "--name", "a", "--budget", "3", "--create-ledger"]) == 0
    assert json.loads(capsys.readouterr().out)["info"]["budget"]["limit"] == 3
    assert (tmp_path / "from-env" / "ledger.sqlite3").is_file()
