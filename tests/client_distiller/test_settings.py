"""The typed settings of ``client-distiller``: one definition per option, flags and VL2V_* env
vars derived from it, validation as one ``error:`` line with the old exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from pydantic_settings import get_subcommand

from client_distiller.cli import COMMANDS, ClientDistiller, build_parser, main, parse
from client_distiller.commands.estimate import Estimate
from client_distiller.commands.fetch import Fetch
from client_distiller.commands.run import Run

SHARED = (
    "views",
    "view_seed",
    "prompts",
    "data",
    "data_dir",
    "target_domain",
    "holdout_fraction",
    "split_seed",
    "cache_dir",
    "endpoint",
    "api_key",
    "local_teacher",
    "local_pretrained",
    "clip_config_dirs",
    "concurrency",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("VL2V_ENDPOINT", "VL2V_API_KEY", "VL2V_CACHE_DIR", "VL2V_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)


def _command(argv: list[str]):
    return get_subcommand(parse(argv))


def test_the_commands_are_the_settings_models_subcommands() -> None:
    assert set(COMMANDS) == set(ClientDistiller.model_fields) - {"verbose"}


@pytest.mark.parametrize("name", SHARED)
def test_shared_options_have_one_type_and_one_default(name: str) -> None:
    fields = [command.model_fields[name] for command in (Estimate, Fetch, Run)]
    assert all(f.annotation == fields[0].annotation for f in fields), name
    assert all(f.default == fields[0].default for f in fields), name
    assert all(f.description == fields[0].description for f in fields), name


def test_views_default_to_four_everywhere() -> None:
    for command in ("estimate", "fetch", "run"):
        assert _command([command]).views == [4]


def test_env_vars_and_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VL2V_ENDPOINT", "http://vendor.example:8000")
    monkeypatch.setenv("VL2V_API_KEY", "vk_secret")
    monkeypatch.setenv("VL2V_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VL2V_DATA_DIR", str(tmp_path / "data"))
    fetch = _command(["fetch"])
    assert fetch.endpoint == "http://vendor.example:8000"
    assert isinstance(fetch.api_key, SecretStr)
    assert fetch.api_key.get_secret_value() == "vk_secret"
    assert "vk_secret" not in repr(fetch)  # the key never shows in a repr or a log line
    assert (fetch.cache_dir, fetch.data_dir) == (tmp_path / "cache", tmp_path / "data")
    # A flag wins over its env var.
    run = _command(["run", "--endpoint", "http://other:1", "--api-key", "vk_flag"])
    assert run.endpoint == "http://other:1" and run.api_key.get_secret_value() == "vk_flag"
    # An empty variable (compose passes unset ones as "") counts as unset.
    monkeypatch.setenv("VL2V_API_KEY", "")
    assert _command(["fetch"]).api_key is None


def test_list_options() -> None:
    run = _command(["run", "--views", "1,2,online", "--seeds", "0,1,2", "--algorithms", "erm,adip"])
    assert run.views == [1, 2, "online"]
    assert run.seeds == [0, 1, 2] and run.algorithms == ["erm", "adip"]
    # Prompts are taken as typed: commas and quotes stay inside one template.
    templates = ["a photo of a {}, a type of pet.", 'a "{}"', "it's a {}"]
    assert _command(["fetch", "--prompts", *templates, "--views", "2"]).prompts == templates
    assert _command(["fetch", "--prompts", templates[0]]).prompts == templates[:1]
    assert _command(["fetch", "--prompts=a {}", "--prompts", "b {}"]).prompts == ["a {}", "b {}"]
    predict = _command(["predict", "--checkpoint", "c.pt", "a,b.png", "c d.png"])
    assert [str(p) for p in predict.images] == ["a,b.png", "c d.png"]
    evaluate = _command(["evaluate", "--checkpoint", "c.pt", "--domains", "photo", "sketch"])
    assert evaluate.domains == ["photo", "sketch"]


def test_flags_keep_their_spellings() -> None:
    run = _command(
        [
            "run", "--target-domain", "sketch", "--max-queries", "7", "--local-teacher", "m",
            "--local-pretrained", "p.pt", "--no-progress", "--no-pretrained", "--train-bn",
            "--swa", "--report-only", "--kd-temperature", "2", "--student-size", "32",
        ]
    )  # fmt: skip
    assert (run.target_domain, run.max_queries, run.local_teacher) == ("sketch", 7, "m")
    assert (run.progress, run.pretrained, run.train_bn, run.swa) == (False, False, True, True)
    assert run.report_only and run.kd_temperature == 2.0 and run.student_size == 32
    assert _command(["fetch", "--no-zeroshot"]).zeroshot is False
    assert parse(["-v", "report"]).verbose is True


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return code, errors[0]


def test_bad_values_are_one_error_line_with_the_old_exit_codes(capsys) -> None:
    # A value of the wrong type is a bad command line (2), as argparse's type= conversions were.
    code, err = _error(["run", "--steps", "abc"], capsys)
    assert code == 2 and err.startswith("error: --steps:") and "'abc'" in err
    # A value that does not make sense is an error (1), as the hand-written checks were.
    code, err = _error(["run", "--views", "2,x"], capsys)
    assert code == 1 and "error: --views: 'x' is neither a count >= 1 nor 'online'" in err
    code, err = _error(["run", "--algorithms", "erm,bogus"], capsys)
    assert code == 1 and "unknown algorithm(s) bogus; choose from erm, kd, adip, sd" in err
    code, err = _error(["run", "--algorithms", "sd"], capsys)
    assert code == 1 and "sd is white-box: it needs --local-teacher" in err
    code, err = _error(["run", "--student", "resnet18", "--student-weights", "w.pth"], capsys)
    assert code == 1 and "--student-weights applies to the demo student only" in err
    code, err = _error(["fetch", "--max-queries", "-1"], capsys)
    assert code == 1 and err.startswith("error: --max-queries:")
    code, err = _error(["fetch", "--concurrency", "0"], capsys)
    assert code == 1 and err.startswith("error: --concurrency:")
    code, err = _error(["fetch", "--prompts", "no placeholder"], capsys)
    assert code == 1 and "must contain exactly one '{}'" in err
    code, err = _error(["estimate", "--holdout-fraction", "1.5"], capsys)
    assert code == 1 and err.startswith("error: --holdout-fraction:")


def test_online_views_cannot_be_fetched(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    argv = ["fetch", "--data", str(tiny_dataset), "--target-domain", "photo", "--views", "online"]
    code, err = _error(
        [*argv, "--local-teacher", "vl2v-tiny", "--cache-dir", str(tmp_path)], capsys
    )
    assert code == 1 and "--views online draws its views while training" in err


def test_unknown_flags_and_missing_arguments_exit_2(capsys) -> None:
    for argv in (["fetch", "--bogus"], ["predict", "x.png"], ["predict", "--checkpoint", "c"], []):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
        assert "usage: client-distiller" in capsys.readouterr().err


def test_build_parser_accepts_the_documented_commands() -> None:
    parser = build_parser()
    parser.parse_args(
        ["run", "--data", "demo", "--target-domain", "sketch", "--algorithms",
         "erm,kd,adip,zeroshot", "--views", "4", "--steps", "200", "--align-steps", "200",
         "--batch-size", "16", "--threads", "1", "--out", "/work/runs/demo"]
    )  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--no-such-flag"])
