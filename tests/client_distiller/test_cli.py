"""The CLI in process: help, clear user errors, and the local (white-box) teacher path."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_distiller.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: client-distiller" in capsys.readouterr().out


def _err(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_user_errors_are_one_line(tiny_dataset: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    for var in ("VL2V_ENDPOINT", "VL2V_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    cache = ["--cache-dir", str(tmp_path / "c")]
    code, err = _err(
        [
            "fetch",
            "--data",
            str(tmp_path / "missing"),
            "--target-domain",
            "x",
            "--local-teacher",
            "vl2v-tiny",
            *cache,
        ],
        capsys,
    )
    assert code == 1 and "no such folder" in err
    code, err = _err(
        [
            "estimate",
            "--data",
            str(tiny_dataset),
            "--target-domain",
            "art",
            "--local-teacher",
            "vl2v-tiny",
            *cache,
        ],
        capsys,
    )
    assert code == 1 and "'art' is not a domain" in err and "cartoon, photo, sketch" in err
    code, err = _err(["estimate", "--data", str(tiny_dataset), *cache], capsys)
    assert code == 1 and "--target-domain is required" in err
    code, err = _err(
        ["fetch", "--data", str(tiny_dataset), "--target-domain", "sketch", *cache], capsys
    )
    assert code == 1 and "no teacher" in err
    code, err = _err(
        [
            "fetch",
            "--data",
            str(tiny_dataset),
            "--target-domain",
            "sketch",
            "--endpoint",
            "http://127.0.0.1:9",
            *cache,
        ],
        capsys,
    )
    assert code == 1 and "no API key" in err
    code, err = _err(
        [
            "fetch",
            "--data",
            str(tiny_dataset),
            "--target-domain",
            "sketch",
            "--local-teacher",
            "vl2v-tiny",
            "--prompts",
            "no placeholder",
            *cache,
        ],
        capsys,
    )
    assert code == 1 and "must contain exactly one '{}'" in err
    code, err = _err(["report", "--cache-dir", str(tmp_path / "empty")], capsys)
    assert code == 1 and "no spend recorded" in err


def test_local_teacher_estimate_fetch_report(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    args = [
        "--data",
        str(tiny_dataset),
        "--target-domain",
        "photo",
        "--views",
        "2",
        "--local-teacher",
        "vl2v-tiny",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(["estimate", *args]) == 0
    assert "image queries to send: 54, text queries to send: 3" in capsys.readouterr().out
    assert main(["fetch", *args, "--no-progress"]) == 0
    assert "computed 57 queries locally (nothing paid), 0 cache hits" in capsys.readouterr().out
    assert main(["estimate", *args]) == 0
    assert "image queries to send: 0" in capsys.readouterr().out
    plot = tmp_path / "p.png"
    assert main(["report", "--cache-dir", str(tmp_path / "c"), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "train-views" in out and "class-texts" in out and plot.stat().st_size > 1000


def test_data_demo_resolves_through_the_demo_edge(
    tiny_dataset: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    # Generating the real demo benchmark takes ~20 s here (the demo-world tests cover it); this
    # checks only that `--data demo` goes through demo_world.assets.ensure_demo_benchmark, in
    # the data dir the settings name (VL2V_DATA_DIR, else ~/.cache/vl2v/data).
    assets = pytest.importorskip("demo_world.assets")
    calls = []

    def fake_ensure(root=None, **kw):
        calls.append(root)
        return tiny_dataset

    monkeypatch.setattr(assets, "ensure_demo_benchmark", fake_ensure)
    args = [
        "estimate",
        "--data",
        "demo",
        "--target-domain",
        "photo",
        "--local-teacher",
        "vl2v-tiny",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    monkeypatch.delenv("VL2V_DATA_DIR", raising=False)
    assert main(args) == 0
    assert calls == [Path.home() / ".cache" / "vl2v" / "data"]
    assert f"data: {tiny_dataset}" in capsys.readouterr().out
    monkeypatch.setenv("VL2V_DATA_DIR", str(tmp_path / "data-dir"))
    assert main(args) == 0
    assert calls[1:] == [tmp_path / "data-dir"]
    assert main([*args, "--data-dir", str(tmp_path / "flag")]) == 0  # the flag wins
    assert calls[2:] == [tmp_path / "flag"]
