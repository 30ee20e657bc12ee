"""``python -m student_runtime MODEL.onnx IMAGES...``: classify files and folders, torch-free.

Prints one line per image (``PATH<TAB>label p, ...``, or JSON with ``--json``) on stdout, one
``warning:`` line per unreadable file and a count on stderr; exits 0 if any image was
classified, 1 if none was (or the model cannot be loaded), 2 on a bad command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from student_runtime.predictions import FileRun, classify_files
from student_runtime.student import ModelLoadError, Student


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m student_runtime",
        description="Classify images with an exported student (onnxruntime; no torch).",
    )
    parser.add_argument("model", type=Path, help="exported student (.onnx)")
    parser.add_argument("images", nargs="+", type=Path, help="image files and folders")
    parser.add_argument("--top-k", type=int, default=1, help="classes shown per image (1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (32)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be >= 1")
    try:
        student = Student(args.model, threads=args.threads)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    run = FileRun()
    for prediction in classify_files(
        args.images,
        lambda images: student.run(student.preprocess(images)),
        student.classes,
        top_k=args.top_k,
        batch_size=args.batch_size,
        on_skip=lambda path, reason: print(f"warning: skipped {path}: {reason}", file=sys.stderr),
        run=run,
    ):
        print(prediction.json_line() if args.json else prediction.text_line(), flush=True)
    print(run.summary(), file=sys.stderr)
    if run.classified == 0:
        print("error: no image was classified", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
