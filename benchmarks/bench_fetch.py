"""Client fetch: is the client ever the bottleneck, does the cache make reruns free, cost growth.

Rows (issue 7):
  4. ``fetch_plan`` with a ``RemoteTeacher`` (the library behind ``client-distiller fetch``)
     over a fresh cache, in queries/s, divided by the vendor's capacity measured in the same
     run against the same server exactly as row 1 does (16 clients x 1 image per request).
  5. the same plan fetched again over the now-full cache by a fresh teacher object (a rerun):
     queries sent, and wall time vs the first fetch.
  9b. fetch time per image for 1k, 4k, 16k distinct synthetic PNGs, each over a fresh cache.

    .venv/bin/python benchmarks/bench_fetch.py                 # ~4 min on 2 cores
    .venv/bin/python benchmarks/bench_fetch.py --views 4 --sizes 1000,4000,16000,64000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import BENCH_DIR, Result, Row, choose_teacher
from bench_vendor import demo_pngs
from loadgen import image_request_bodies, run_load


def synthetic_images(n: int, seed: int = 0):
    """``n`` distinct small RGB images (a coloured background, a rectangle and a disc)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        bg = tuple(int(c) for c in rng.integers(0, 256, 3))
        img = Image.new("RGB", (64, 64), bg)
        d = ImageDraw.Draw(img)
        x0, y0 = (int(v) for v in rng.integers(0, 40, 2))
        d.rectangle(
            [x0, y0, x0 + int(rng.integers(8, 24)), y0 + int(rng.integers(8, 24))],
            fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
        cx, cy, r = (int(v) for v in rng.integers(8, 56, 3) % 48 + 4)
        d.ellipse(
            [cx - r // 3, cy - r // 3, cx + r // 3, cy + r // 3],
            fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
        out.append(img)
    return out


def timed_fetch(plan, endpoint: str, key: str, cache_dir: Path, concurrency: int):
    """(seconds, queries sent, cache hits) of ``fetch_plan`` with a new teacher object."""
    from client_distiller.plan import fetch_plan
    from client_distiller.teacher import open_teacher

    with open_teacher(
        endpoint=endpoint, api_key=key, cache_dir=cache_dir, concurrency=concurrency, stage="bench"
    ) as teacher:
        _ = teacher.card  # the card request is part of neither fetch's work
        t0 = time.perf_counter()
        fetch_plan(plan, teacher, progress=False)
        seconds = time.perf_counter() - t0
        return seconds, teacher.sent, teacher.cache_hits


def timed_synthetic(
    images, endpoint: str, key: str, cache_dir: Path, concurrency: int, batch: int = 256
) -> tuple[float, int]:
    """Seconds to embed ``images`` through a fresh cache, ``batch`` at a time like fetch_plan."""
    from client_distiller.teacher import open_teacher

    with open_teacher(
        endpoint=endpoint, api_key=key, cache_dir=cache_dir, concurrency=concurrency, stage="bench"
    ) as teacher:
        _ = teacher.card
        t0 = time.perf_counter()
        for i in range(0, len(images), batch):
            teacher.embed_images(images[i : i + batch], purpose="synthetic")
        return time.perf_counter() - t0, teacher.sent


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client fetch benchmark; see the module docstring."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="vl2v-demo-v3", help="served model (default vl2v-demo-v3)")
    p.add_argument(
        "--target-domain",
        default=None,
        help="held-out domain of the plan (default: the demo's last domain)",
    )
    p.add_argument("--views", type=int, default=1, help="views per training image (K)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="client requests in flight (client-distiller's default 4)",
    )
    p.add_argument(
        "--capacity-seconds",
        type=float,
        default=6.0,
        help="window of the vendor-capacity load (16 clients x 1 image)",
    )
    p.add_argument("--sizes", default="1000,4000,16000", help="synthetic fetch sizes (row 9b)")
    p.add_argument("--out", type=Path, default=BENCH_DIR, help="result folder")
    args = p.parse_args(argv)

    from client_distiller.commands.common import open_dataset
    from client_distiller.commands.options import DatasetOptions
    from client_distiller.plan import build_plan
    from vendor_service.process import start_vendor

    teacher = choose_teacher(args.model, args.out / "scratch")
    dataset = open_dataset(DatasetOptions())  # --data demo, in $VL2V_DATA_DIR
    target = args.target_domain or dataset.domains[-1]
    plan = build_plan(dataset, target, views=args.views)
    count = plan.count()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    knobs = {"rate_limit_rps": 1e6, "rate_limit_burst": 10**6, **teacher.knobs()}
    (args.out / "scratch").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="fetch-", dir=args.out / "scratch"))
    result = Result("fetch")
    synth: dict[int, dict] = {}
    try:
        (scratch / "vendor").mkdir()
        with start_vendor(scratch / "vendor", model=teacher.model, **knobs) as vendor:
            key = vendor.create_key(10**12, name="bench")
            import httpx

            card = httpx.get(vendor.base_url + "/v1/models").json()["data"][0]
            bodies = image_request_bodies(demo_pngs(64, card["image_size"]), 1)
            print("vendor capacity: 16 clients x 1 image per request")
            cap = run_load(
                vendor.base_url,
                key,
                bodies,
                concurrency=16,
                seconds=args.capacity_seconds,
                warmup=1.5,
            )
            capacity = cap.throughput
            print(f"  {capacity:.1f} images/s  {cap.summary()}")

            print(
                f"fetch plan: {count.images} images + {count.texts} texts "
                f"(target {target}, K={args.views}), fresh cache"
            )
            t1, sent1, hits1 = timed_fetch(
                plan, vendor.base_url, key, scratch / "cache", args.concurrency
            )
            print(f"  first:  {t1:7.2f} s, sent {sent1}, cache hits {hits1}")
            t2, sent2, hits2 = timed_fetch(
                plan, vendor.base_url, key, scratch / "cache", args.concurrency
            )
            print(f"  second: {t2:7.2f} s, sent {sent2}, cache hits {hits2}")

            # Warm the client path (threads, connections, encoders) on a throwaway cache, so
            # the smallest size is not charged for first use.
            timed_synthetic(
                synthetic_images(128, seed=1),
                vendor.base_url,
                key,
                scratch / "cache-warm",
                args.concurrency,
            )
            for n in sizes:
                images = synthetic_images(n, seed=n)
                secs, sent = timed_synthetic(
                    images, vendor.base_url, key, scratch / f"cache-{n}", args.concurrency
                )
                synth[n] = {
                    "seconds": round(secs, 2),
                    "sent": sent,
                    "ms_per_image": round(1000 * secs / n, 3),
                }
                print(f"  synthetic {n:6d}: {secs:7.2f} s  {1000 * secs / n:6.2f} ms/image")
                del images
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    fetch_thr = sent1 / t1
    r4 = fetch_thr / capacity
    r5 = t1 / t2 if t2 > 0 else float("inf")
    per = [synth[n]["ms_per_image"] for n in sizes]
    growth = max(per) / min(per) if per else float("nan")
    result.rows = [
        Row(
            "4",
            "client fetch throughput vs vendor capacity (row 1's load)",
            f"{r4:.2f} ({fetch_thr:.0f} vs {capacity:.0f} img/s)",
            ">= 0.8",
            r4 >= 0.8,
            round(r4, 3),
        ),
        Row(
            "5",
            "second fetch of the same plan: queries sent; speed-up",
            f"{sent2} queries; {r5:.0f}x ({t1:.1f} s -> {t2:.2f} s)",
            "0; >= 50x",
            sent2 == 0 and r5 >= 50,
            round(r5, 1),
        ),
        Row(
            "9b",
            f"client fetch ms/image at {','.join(str(n) for n in sizes)} images",
            " ".join(f"{n // 1000}k:{synth[n]['ms_per_image']:.2f}" for n in sizes)
            + f" (max/min {growth:.2f})",
            "flat per item (max/min <= 1.5)",
            growth <= 1.5,
            round(growth, 3),
        ),
    ]
    result.details = {
        "teacher": teacher.weights,
        "card": {k: card.get(k) for k in ("id", "image_size", "max_items_per_request")},
        "plan": {
            "target": target,
            "views": args.views,
            "images": count.images,
            "texts": count.texts,
        },
        "concurrency": args.concurrency,
        "vendor_capacity": cap.summary(),
        "first_fetch": {
            "seconds": round(t1, 3),
            "sent": sent1,
            "cache_hits": hits1,
            "queries_s": round(fetch_thr, 1),
        },
        "second_fetch": {"seconds": round(t2, 3), "sent": sent2, "cache_hits": hits2},
        "synthetic": {str(n): v for n, v in synth.items()},
    }
    result.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
