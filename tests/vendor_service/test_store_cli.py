"""The store side of ``vendor-service keys|usage|db`` (issue 13.12-13.14, 15): the admin API's
schemas and JSON shapes, no ledger created by a typo, one-line errors, PostgreSQL too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared_schemas import KeyCreateResponse, KeyListResponse, KeyPublic
from tests.helpers.postgres import postgres_server  # noqa: F401 - a fixture
from tests.helpers.vendor_process import REPO_ROOT
from tests.vendor_service.conftest import ADMIN
from vendor_service.cli import main


@pytest.fixture(autouse=True)
def _isolated_environ(monkeypatch):
    monkeypatch.setattr(os, "environ", os.environ.copy())
    for name in list(os.environ):
        if name.startswith("VENDOR_"):
            monkeypatch.delenv(name)


def _create(d: list[str], *extra: str) -> int:
    return main(["keys", "create", "--name", "n", "--budget", "5", *extra, *d])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--budget", "-1"], "error: --budget: Input should be greater than or equal to 0"),
        (["--rps", "-5"], "error: --rps: Input should be greater than 0"),
        (["--rps", "0"], "error: --rps: Input should be greater than 0"),
        (["--rps", "nan"], "error: --rps:"),
        (["--rps", "inf"], "error: --rps:"),
        (["--burst", "-1"], "error: --burst: Input should be greater than or equal to 1"),
        (["--burst", "0"], "error: --burst:"),
        (["--name", ""], "error: --name:"),
    ],
)
def test_keys_create_refuses_what_the_admin_api_refuses(tmp_path, capsys, flags, message):
    d = ["--data-dir", str(tmp_path / "d")]
    argv = ["keys", "create", "--name", "n", "--budget", "5", "--create-ledger", *d, *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_keys_topup_refuses_zero_and_negative_and_never_lowers_a_limit(tmp_path, capsys):
    d = ["--data-dir", str(tmp_path)]
    assert _create(d, "--create-ledger") == 0
    key_id = json.loads(capsys.readouterr().out)["info"]["id"]
    for queries in ("-1", "0", "-5"):
        assert main(["keys", "topup", key_id, "--queries", queries, *d]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --queries: Input should be greater than or equal to 1")
    assert main(["keys", "topup", key_id, "--queries", "7", *d]) == 0
    assert KeyPublic.model_validate_json(capsys.readouterr().out).budget.limit == 12


def test_cli_json_has_the_admin_apis_shapes(tmp_path, capsys, api):
    d = ["--data-dir", str(tmp_path / "cli")]
    assert _create(d, "--create-ledger", "--rps", "2.5") == 0
    cli_created = json.loads(capsys.readouterr().out)
    KeyCreateResponse.model_validate(cli_created)
    api_created = api.client.post(
        "/v1/admin/keys",
        json={"name": "n", "budget": 5, "rate_limit_rps": 2.5},
        headers={"Authorization": f"Bearer {ADMIN}"},
    ).json()

    def shape(value):
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        return type(value).__name__

    assert shape(cli_created) == shape(api_created)
    assert cli_created["info"]["rate_limit_rps"] == api_created["info"]["rate_limit_rps"] == 2.5
    assert main(["keys", "list", *d]) == 0
    listed = KeyListResponse.model_validate_json(capsys.readouterr().out)
    assert [k.id for k in listed.data] == [cli_created["info"]["id"]]
    api_list = api.client.get("/v1/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"})
    assert shape(json.loads(listed.model_dump_json())["data"][0]) == shape(
        api_list.json()["data"][0]
    )


def test_key_commands_on_a_dir_without_a_ledger_fail_and_create_nothing(tmp_path, capsys):
    typo = tmp_path / "vendor-dtaa"
    for argv in (
        ["keys", "create", "--name", "a", "--budget", "1"],
        ["keys", "list"],
        ["keys", "topup", "key_x", "--queries", "1"],
        ["keys", "revoke", "key_x"],
        ["usage"],
        ["db", "status"],
    ):
        assert main([*argv, "--data-dir", str(typo)]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: no ledger at") and "db upgrade" in err, err
    assert not typo.exists()
    assert main(["db", "upgrade", "--data-dir", str(typo)]) == 0  # the explicit way
    assert json.loads(capsys.readouterr().out)["applied"] == [1, 2]
    assert main(["keys", "list", "--data-dir", str(typo)]) == 0
    assert json.loads(capsys.readouterr().out) == {"data": []}


def test_an_unusable_data_dir_is_one_line(tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("not a dir")
    assert _create(["--data-dir", str(afile / "data")], "--create-ledger") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_a_closed_pipe_is_quiet(tmp_path):
    d = ["--data-dir", str(tmp_path)]
    assert _create(d, "--create-ledger") == 0
    from vendor_service.metering import SQLiteStore

    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    for i in range(400):  # more JSON than a pipe buffers, so the writer meets the closed end
        store.create_key(f"key-{i}", 1)
    store.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vendor_service.cli", "keys", "list", *d],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout.read(10)  # `| head -c 10`
    proc.stdout.close()
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    assert proc.wait(60) == 1
    assert stderr == "", stderr


def test_db_status_names_the_schema_and_the_live_owners(tmp_path, capsys):
    d = ["--data-dir", str(tmp_path)]
    assert main(["db", "upgrade", *d]) == 0
    capsys.readouterr()
    from vendor_service.metering import SQLiteStore

    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    store.register_owner("own_x", "inst_y")
    assert main(["db", "status", *d]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["schema_version"] == 2 and status["store"].startswith("SQLite ledger")
    assert [(o["id"], o["server"], o["pid"]) for o in status["owners"]] == [
        ("own_x", "inst_y", os.getpid())
    ]
    store.close()


def test_keys_and_usage_against_postgresql(postgres_server, capsys, tmp_path):  # noqa: F811
    postgres_url = postgres_server.create_database()
    db = ["--database-url", postgres_url, "--data-dir", str(tmp_path / "unused")]
    assert main(["keys", "list", *db]) == 2  # an empty database has no ledger yet
    assert "no ledger in postgresql://" in capsys.readouterr().err
    assert main(["db", "upgrade", *db]) == 0
    assert json.loads(capsys.readouterr().out)["applied"] == [2]
    assert main(["db", "upgrade", *db]) == 0  # idempotent
    assert json.loads(capsys.readouterr().out)["applied"] == []
    assert main(["keys", "create", "--name", "pg", "--budget", "9", *db]) == 0
    created = KeyCreateResponse.model_validate_json(capsys.readouterr().out)
    assert main(["keys", "topup", created.info.id, "--queries", "1", *db]) == 0
    assert KeyPublic.model_validate_json(capsys.readouterr().out).budget.limit == 10
    os.environ["VENDOR_DATABASE_URL"] = postgres_url  # the env var selects it too
    assert main(["usage", "--key-id", created.info.id]) == 0
    assert json.loads(capsys.readouterr().out)["budget"] == {
        "limit": 10,
        "used": 0,
        "remaining": 10,
    }
    assert not (tmp_path / "unused").exists()  # nothing written to a data dir


def test_a_bad_database_url_is_one_line(capsys, tmp_path):
    argv = ["keys", "list", "--data-dir", str(tmp_path)]
    assert main([*argv, "--database-url", "mysql://x"]) == 2
    assert "must start with postgresql://" in capsys.readouterr().err
    assert main([*argv, "--database-url", "postgresql://nobody@127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot connect to postgresql://nobody@127.0.0.1:1/x")
    assert err.count("\n") == 1
