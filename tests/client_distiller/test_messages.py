"""What a person sees: configuration mistakes at once, plain progress off a terminal, one
warning per unreadable image, tables without invented error bars, what a fetch sent and why,
and a run that asks the teacher only for what its algorithms read."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from client_distiller.cli import main
from client_distiller.commands.run import default_threads
from client_distiller.results import RunRecord, markdown_table

TINY_RUN = [
    "--target-domain", "sketch", "--student", "test_resnet", "--student-size", "32",
    "--no-pretrained", "--steps", "2", "--align-steps", "2", "--batch-size", "2",
    "--threads", "1", "--views", "1",
]  # fmt: skip


def _err(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, float]:
    t0 = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - t0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err, seconds


@pytest.mark.parametrize(
    ("endpoint", "hint"),
    [
        ("127.0.0.1:9", "needs http:// or https://"),
        ("vendor.example", "needs http:// or https://"),
        ("http://127.0.0.1:9/v1", "ends in /v1: give the server's base URL (http://127.0.0.1:9)"),
        ("http://127.0.0.1:9/v1/", "ends in /v1"),
    ],
)
def test_a_malformed_endpoint_fails_at_once_with_a_hint(
    endpoint: str, hint: str, tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    argv = ["fetch", "--data", str(tiny_dataset), "--target-domain", "sketch", "--endpoint",
            endpoint, "--api-key", "k", "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    code, err, seconds = _err(argv, capsys)
    assert code == 1 and hint in err and len(err.strip().splitlines()) == 1
    assert seconds < 5  # no retries: nothing listens on port 9, and nothing was tried
    assert not (tmp_path / "c").exists()


def test_the_openai_base_url_may_end_in_v1(tmp_path: Path) -> None:
    from pydantic_settings import get_subcommand

    from client_distiller.cli import parse

    fetch = get_subcommand(parse(["fetch", "--api", "openai", "--endpoint", "http://h:8000/v1"]))
    assert fetch.endpoint == "http://h:8000/v1"


def test_steps_zero_is_refused(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    for flag in ("--steps", "--align-steps"):
        code, err, _ = _err(["run", "--data", str(tiny_dataset), flag, "0"], capsys)
        assert code == 1 and flag in err and "greater than or equal to 1" in err


def test_threads_default_to_half_the_cores_within_bounds(monkeypatch) -> None:
    import os

    for cores, threads in ((1, 1), (2, 1), (4, 2), (16, 8), (64, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _, n=cores: set(range(n)))
        assert default_threads() == threads


def test_erm_alone_needs_no_teacher_and_no_queries(tiny_dataset: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--data", str(tiny_dataset), *TINY_RUN, "--algorithms", "erm",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "no teacher queries: the chosen algorithms read no teacher" in printed
    (record,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert record["algorithm"] == "erm" and record["queries_used"] == 0
    assert record["teacher"] == {}
    assert not (tmp_path / "cache").exists()  # nothing was asked, nothing cached


def test_run_fetches_only_what_its_algorithms_read(
    tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    cache = tmp_path / "cache"
    base = ["run", "--data", str(tiny_dataset), *TINY_RUN, "--local-teacher", "vl2v-tiny",
            "--cache-dir", str(cache), "--no-progress"]  # fmt: skip

    def purposes() -> dict[str, int]:
        db = sqlite3.connect(cache / "ledger.sqlite")
        try:
            rows = db.execute("SELECT purpose, SUM(sent) FROM events GROUP BY purpose")
            return {p: n for p, n in rows if n}
        finally:
            db.close()

    # erm with a teacher configured: its card only, no query.
    assert main([*base, "--algorithms", "erm", "--out", str(tmp_path / "a")]) == 0
    assert "teacher queries sent by this run: 0" in capsys.readouterr().out
    # kd without the zero-shot reference: training views and class texts, no eval images.
    assert main([*base, "--algorithms", "kd,zeroshot", "--no-zeroshot", "--out",
                 str(tmp_path / "b")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    sent = purposes()
    assert set(sent) == {"train-views", "class-texts"}, sent
    # The line says what the queries were, and the parts add up.
    n_views, n_texts = sent["train-views"], sent["class-texts"]
    assert (
        f"teacher: {n_views + n_texts} new queries sent: {n_views} training views "
        f"({n_views} images x 1 views), {n_texts} class texts"
    ) in printed
    records = [json.loads(x) for x in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    assert [r["algorithm"] for r in records] == ["kd"]
    # The zero-shot reference asks for the evaluation images only.
    assert main([*base, "--algorithms", "zeroshot", "--out", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    assert "evaluation images (the zero-shot reference)" in printed
    assert set(purposes()) == {"train-views", "class-texts", "eval-images"}


def test_progress_off_a_terminal_is_a_few_plain_lines(
    tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    argv = ["fetch", "--data", str(tiny_dataset), "--target-domain", "sketch", "--views", "2",
            "--local-teacher", "vl2v-tiny", "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    assert main(argv) == 0  # captured output is not a terminal
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
    lines = captured.err.splitlines()
    teacher = [line for line in lines if line.startswith("teacher:")]
    assert 2 <= len(teacher) <= 5 and "(100%) done after" in teacher[-1]
    assert any(line.startswith("scan dataset:") for line in lines)
    assert main([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""  # --no-progress: not even the dataset scan


def test_each_unreadable_image_is_warned_about_once_with_a_count(
    tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    bad = [tiny_dataset / "photo" / "fish" / "bad.png", tiny_dataset / "sketch" / "tree" / "x.jpg"]
    for path in bad:
        path.write_bytes(b"not an image")
    argv = ["estimate", "--data", str(tiny_dataset), "--target-domain", "sketch",
            "--local-teacher", "vl2v-tiny", "--cache-dir", str(tmp_path / "c"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    for path in bad:
        assert sum(str(path) in line for line in err) == 1, err
    assert sum("2 unreadable image(s) skipped" in line for line in err) == 1
    assert len(err) == 3, err


def _record(seed: int, target: str, acc: float) -> RunRecord:
    return RunRecord(
        dataset="d", target=target, algorithm="adip", seed=seed, views=4, id_acc=acc,
        ood_acc=acc, per_domain={target: acc},
    )  # fmt: skip


def test_one_seed_shows_no_error_bar() -> None:
    one = markdown_table([_record(0, "sketch", 0.5), _record(0, "photo", 0.7)])
    assert "±" not in one and "| adip | 70.0 | 50.0 | 60.0 |" in one
    two = markdown_table([_record(0, "sketch", 0.5), _record(1, "sketch", 0.7)])
    assert "| adip | 60.0 ± 10.0 | 60.0 ± 10.0 |" in two
