"""`make demo`: the whole product on the embedded demo world, end to end, in one command.

1. start ``vendor-service serve`` as a real process on a free 127.0.0.1 port (the one launcher,
   ``vendor_service.process``), serving the demo teacher by explicit settings (architecture,
   config dir, shipped checkpoint, card text), with its ledger under ``runs/demo/vendor-data``;
2. create an API key with a budget (``vendor-service keys create``) or reuse the one saved in
   ``runs/demo/api_key`` by an earlier demo;
3. ``client-distiller run`` against it: the demo benchmark with one held-out style, erm, kd,
   adip and the teacher's zero-shot line; teacher answers cached under ``runs/demo/cache``;
4. print the ID/OOD table and the query spend (client ledger and the vendor's own count),
   write the plots under ``runs/demo/``, and stop the vendor (also on error or Ctrl-C);
5. export the ADiP student (``client-distiller export``, ONNX) and classify a few held-out
   images with the torch-free runtime (``student_runtime``) in a fresh process.

A second ``make demo`` reuses the key, the cache, the trained checkpoints and the export: it
spends zero new queries and skips training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vendor_service.demo import demo_teacher
from vendor_service.inference.loading import ModelUnavailable
from vendor_service.process import VendorProcess, start_vendor

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def vendor_cli(*args: str, data_dir: Path) -> str:
    """Run ``vendor-service ARGS --data-dir DATA_DIR`` and return its stdout."""
    out = subprocess.run(
        [str(BIN / "vendor-service"), *args, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return out.stdout


def ensure_key(data_dir: Path, key_file: Path, budget: int) -> str:
    """The saved demo key if the vendor's ledger still knows it, else a new one (saved 0600)."""
    if key_file.is_file() and (data_dir / "ledger.sqlite3").is_file():
        key = key_file.read_text().strip()
        keys = json.loads(vendor_cli("keys", "list", data_dir=data_dir))["data"]
        if any(
            key.startswith(k["prefix"]) and not k["revoked"] and k["budget"]["remaining"] > 0
            for k in keys
        ):
            print(f"reusing the demo API key saved in {key_file}")
            return key
    created = json.loads(
        vendor_cli(
            "keys",
            "create",
            "--name",
            "demo",
            "--budget",
            str(budget),
            "--create-ledger",
            data_dir=data_dir,
        )
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600)
    key_file.write_text(created["key"])
    print(
        f"created API key {created['info']['prefix']}... with a budget of {budget:,} queries "
        f"(saved in {key_file})"
    )
    return created["key"]


#: Run in a fresh process: the runtime's own command line, then proof it never loaded torch.
TORCH_FREE = (
    "import sys; from student_runtime.__main__ import main; code = main(sys.argv[1:]); "
    "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)"
)


def deploy_adip(out: Path, target: str, seed: str) -> int:
    """Export the ADiP student of this demo and classify one held-out image per class with it.

    Returns:
        0, or the failing step's exit code.
    """
    from client_distiller.cli import main as client
    from demo_world import assets

    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    adip = [
        r
        for r in records
        if r["algorithm"] == "adip" and r["target"] == target and str(r["seed"]) == seed
    ]
    if not adip:
        print("no ADiP run in the results: nothing to export", file=sys.stderr)
        return 1
    checkpoint = Path(adip[-1]["checkpoint"])
    model = out / "student-adip.onnx"
    if not model.is_file() or model.stat().st_mtime < checkpoint.stat().st_mtime:
        argv = ["export", "--checkpoint", str(checkpoint), "--out", str(model)]
        print("\n$ client-distiller " + " ".join(argv), flush=True)
        code = client(argv)
        if code != 0:
            return code
    else:
        print(f"\nreusing the export {model} (newer than its checkpoint)")
    held_out = assets.ensure_demo_benchmark(progress=False) / target
    # One image per class of the held-out style (never trained on), the last of each folder.
    images = [max(c.glob("*.png")) for c in sorted(p for p in held_out.iterdir() if p.is_dir())]
    print(
        f"$ python -m student_runtime {model} <{len(images)} held-out {target} images> "
        f"--top-k 3 --json   (in a fresh process that checks torch is never imported)",
        flush=True,
    )
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(model), *map(str, images), "--top-k", "3", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        print(proc.stderr.strip(), file=sys.stderr)
        return proc.returncode
    right = 0
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        truth = Path(row["path"]).parent.name
        right += row["labels"][0] == truth
        ranked = ", ".join(
            f"{label} {p:.2f}" for label, p in zip(row["labels"], row["probabilities"], strict=True)
        )
        name = f"{target}/{truth}/{Path(row['path']).name}"
        print(f"  {name:<24} true {truth:<7} predicted {ranked}")
    print(f"  {right}/{len(images)} right; the runtime never imported torch (onnxruntime only)")
    return 0


#: Steps per stage: the published protocol's 1000 take about 25 CPU-minutes for erm, kd and
#: adip together, over make demo's 10-minute budget; 250 fit it (see the README).
DEMO_STEPS = 250
#: Where the published leave-one-domain-out protocol records the learning rate it chose for each
#: (algorithm, held-out style) by source validation.
SELECTION = REPO / "docs" / "results" / "lodo-v3" / "selection.json"
DEFAULT_LR = 1e-3  # client-distiller run's own default
TRAINED = ("erm", "kd", "adip")


def chosen_rates(target: str, algorithms: Sequence[str]) -> tuple[dict[str, float], str]:
    """Each algorithm's learning rate (the protocol's choice for ``target``, else the default)
    and a few words saying which it is."""
    chosen = json.loads(SELECTION.read_text()) if SELECTION.is_file() else {}
    lrs = {a: float(chosen.get(f"{a}/{target}", DEFAULT_LR)) for a in algorithms}
    picked = [a for a in algorithms if f"{a}/{target}" in chosen]
    if len(picked) == len(algorithms):
        how = "as the published protocol chose them for this held-out style by source validation"
    elif picked:
        how = (
            f"{', '.join(picked)} as the published protocol chose by source validation, the "
            f"others client-distiller's default {DEFAULT_LR:g}"
        )
    else:
        how = f"client-distiller's default (no published choice for {target} in {SELECTION.name})"
    return lrs, how


def summary(out: Path, target: str, seed: str, lrs: dict[str, float]) -> None:
    """One table of this demo's runs (the last record of each algorithm in results.jsonl)."""
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    print(f"\nthis demo, {target} held out, seed {seed}:")
    print("| algorithm | lr | ID % | OOD % | teacher queries used |")
    print("|---|---|---|---|---|")
    for algorithm in ("zeroshot", *lrs):
        rows = [
            r
            for r in records
            if r["algorithm"] == algorithm and r["target"] == target and str(r["seed"]) == seed
        ]
        if rows:
            r = rows[-1]
            lr = f"{lrs[algorithm]:g}" if algorithm in lrs else "-"
            print(
                f"| {algorithm} | {lr} | {100 * r['id_acc']:.1f} | {100 * r['ood_acc']:.1f} "
                f"| {r['queries_used']:,} |"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "runs" / "demo",
        help="demo folder: vendor data, key, cache, results (default runs/demo)",
    )
    parser.add_argument("--target-domain", default="sketch", help="held-out style (sketch)")
    parser.add_argument("--views", default="4", help="teacher views per training image (4)")
    parser.add_argument(
        "--steps",
        type=int,
        default=DEMO_STEPS,
        help=f"steps per stage ({DEMO_STEPS}; the published table trains 1000)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="images per source domain per step (32)"
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=50,
        help="source validation every N steps, keeping the best checkpoint (50)",
    )
    parser.add_argument(
        "--budget", type=int, default=20_000, help="query budget of a new demo key (20,000)"
    )
    parser.add_argument("--seeds", default="0", help="comma list of seeds (0)")
    parser.add_argument(
        "run_args",
        nargs="*",
        metavar="-- RUN_ARGS",
        help="more options for `client-distiller run` (after --)",
    )
    args = parser.parse_args(argv)

    out: Path = args.out.resolve()
    data_dir, cache, key_file = out / "vendor-data", out / "cache", out / "api_key"
    data_dir.mkdir(parents=True, exist_ok=True)
    key = ensure_key(data_dir, key_file, args.budget)

    try:
        teacher = demo_teacher()
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"starting the vendor (log: {out / 'vendor.log'}) ...", flush=True)
    try:
        vendor: VendorProcess = start_vendor(
            out,
            model=teacher.name,
            pretrained=teacher.pretrained,
            config_dirs=teacher.config_dirs,
            description=teacher.description,
            inference_threads=1,
            log_level="warning",
            ready_timeout=180.0,
            cwd=REPO,
        )
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: the vendor did not start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the launcher has already stopped the half-started server
        print("\ninterrupted while the vendor started", file=sys.stderr)
        return 130
    try:
        card = vendor.card()
        print(
            f"vendor ready on {vendor.base_url}: model {card['id']} ({card['fingerprint'][:12]}), "
            f"{card['embed_dim']}-d, {card['image_size']} px",
            flush=True,
        )
        used_before = vendor.usage(key)["budget"]["used"]

        from client_distiller.cli import main as client

        lrs, how = chosen_rates(args.target_domain, TRAINED)
        groups: dict[float, list[str]] = {}
        for algorithm, lr in lrs.items():
            groups.setdefault(lr, []).append(algorithm)
        print(
            f"{args.steps} steps per stage, {args.batch_size} images per source style per step, "
            f"learning rates {', '.join(f'{a} {lr:g}' for a, lr in lrs.items())} ({how}); "
            "the published table trains 1000 steps per stage",
            flush=True,
        )
        t0 = time.perf_counter()
        for i, (lr, algorithms) in enumerate(groups.items()):
            names = algorithms + (["zeroshot"] if i == 0 else [])
            argv_run = [
                "run",
                "--data",
                "demo",
                "--target-domain",
                args.target_domain,
                "--endpoint",
                vendor.base_url,
                "--api-key",
                key,
                "--cache-dir",
                str(cache),
                "--out",
                str(out),
                "--algorithms",
                ",".join(names),
                "--views",
                args.views,
                "--seeds",
                args.seeds,
                "--steps",
                str(args.steps),
                "--align-steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--eval-every",
                str(args.eval_every),
                "--lr",
                f"{lr:g}",
                "--threads",
                "1",
                *args.run_args,
            ]
            print(
                "$ client-distiller " + " ".join(a if a != key else "<key>" for a in argv_run),
                flush=True,
            )
            code = client(argv_run)
            if code == 130:  # Ctrl-C: the client has said what it kept
                print("\nthe demo was interrupted; make demo again resumes it", file=sys.stderr)
                return code
            if code == 3:  # the key's budget ran out; a used-up demo key is replaced next time
                print(
                    "the demo key's budget is used up; make demo again creates a new key (see "
                    "--budget) and pays only for what is not cached",
                    file=sys.stderr,
                )
                return code
            if code != 0:
                print(f"client-distiller run failed with exit code {code}", file=sys.stderr)
                return code
        for seed in args.seeds.split(","):
            summary(out, args.target_domain, seed.strip(), lrs)
        budget = vendor.usage(key)["budget"]
        print(
            f"\nvendor's own count for the demo key: {budget['used'] - used_before:,} queries "
            f"charged by this demo; {budget['used']:,} used of {budget['limit']:,} in total, "
            f"{budget['remaining']:,} remaining"
        )
    except KeyboardInterrupt:
        print(
            "\ninterrupted; the vendor is being stopped (paid answers stay cached)", file=sys.stderr
        )
        return 130
    finally:
        vendor.stop()
    # The vendor is no longer needed: the deployed student never queries it.
    try:
        code = deploy_adip(out, args.target_domain, args.seeds.split(",")[0].strip())
    except KeyboardInterrupt:
        print("\ninterrupted while exporting the student", file=sys.stderr)
        return 130
    print(
        f"\ndemo finished in {time.perf_counter() - t0:.0f} s; plots: "
        f"{out / 'accuracy_per_domain.png'}, {out / 'accuracy_vs_queries.png'}; deployable "
        f"student: {out / 'student-adip.onnx'}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
