"""Interoperability check: `client-distiller fetch --api openai` against a real Infinity server.

Outside `make test` (it installs Infinity and its own torch into a separate venv). Steps:

1. a venv with ``infinity-emb[server,torch]==0.0.78`` and ``aiohttp`` (reused when present;
   ``--torch`` installs a chosen torch first, e.g. a CPU wheel, instead of the default one);
2. a random-weight Hugging Face CLIP of the demo teacher's size, built offline with
   transformers' ``CLIPConfig``/``CLIPModel`` and tokenizer files made from open_clip's bundled
   BPE vocabulary (no hub): 64-d embeddings, 64-px images, the demo's text tower (16 tokens,
   width 64, 3 layers) and a ViT image tower (8-px patches, width 64, 4 layers; HF CLIP has no
   ModifiedResNet, so this is the ``vl2v-demo`` ViT configuration);
3. ``infinity_emb v2 --model-id DIR --engine torch --device cpu`` on a free loopback port;
4. ``client-distiller fetch --api openai`` of a demo-benchmark plan against it (the card facts
   from a card file, no fingerprint: the cache keys on endpoint + model id), then the same
   command again, which must send zero queries;
5. the same load against this project's vendor (serving the same ViT architecture with random
   weights) and against Infinity, side by side: 16 concurrent clients sending one image per
   request, then 4 clients sending 32-image requests, images/s and latency percentiles.

    python scripts/interop_infinity.py --torch 'torch==2.13.0+cpu'

Writes ``runs/interop/infinity.json`` and prints a summary. Exit 0 when every check holds.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
INFINITY = "infinity-emb[server,torch]==0.0.78"
MODEL_NAME = "vl2v-hf-clip"
#: The HF CLIP built here: the demo teacher's joint space and text tower, a ViT image tower.
CLIP_SIZE = {
    "projection_dim": 64,
    "text": {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
             "intermediate_size": 256, "max_position_embeddings": 16, "vocab_size": 49408},
    "vision": {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2,
               "intermediate_size": 256, "image_size": 64, "patch_size": 8},
}  # fmt: skip


# -- step 2: runs inside the Infinity venv (it has transformers) --------------------------------


def build_model(out: Path, bpe_path: Path, seed: int = 0) -> None:
    """Write a random-weight HF CLIP (weights, config, processor, tokenizer) to ``out``."""
    import gzip

    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    out.mkdir(parents=True, exist_ok=True)
    # open_clip's SimpleTokenizer vocabulary, as HF's CLIPTokenizer files (same BPE).
    with gzip.open(bpe_path) as f:
        merges = f.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_chars = [chr(c) for c in cs]
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(p) for p in pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs))
    tokenizer = CLIPTokenizer(
        str(out / "vocab.json"),
        str(out / "merges.txt"),
        model_max_length=16,
        pad_token="<|endoftext|>",
    )
    mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 64},
            crop_size={"height": 64, "width": 64},
            image_mean=mean,
            image_std=std,
        ),
        tokenizer=tokenizer,
    )
    config = CLIPConfig(
        text_config=CLIP_SIZE["text"],
        vision_config=CLIP_SIZE["vision"],
        projection_dim=CLIP_SIZE["projection_dim"],
        logit_scale_init_value=float(torch.log(torch.tensor(100.0))),
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    card = {
        "image_size": 64, "embed_dim": CLIP_SIZE["projection_dim"],
        "logit_scale": float(model.logit_scale.detach().exp()), "image_mean": mean, "image_std": std,
        "max_items_per_request": 32, "description": f"random-weight HF CLIP, {params:,} params",
    }  # fmt: skip
    (out / "vl2v_card.json").write_text(json.dumps(card, indent=2))
    print(f"built {out} ({params:,} parameters)")


# -- helpers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_venv(venv: Path, torch_req: str | None) -> Path:
    """The venv's python, with Infinity installed (only what is missing is installed)."""
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    have = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('infinity_emb'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if have.returncode != 0 or have.stdout.strip() != INFINITY.split("==")[1]:
        pip = [str(py), "-m", "pip", "install", "-q"]
        if torch_req:
            subprocess.run([*pip, torch_req], check=True)
        subprocess.run([*pip, INFINITY, "aiohttp"], check=True)
    return py


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s; see {log}")


def client(*args: str) -> tuple[int, str]:
    """``client-distiller ARGS`` as a subprocess; (exit code, stdout + stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "client_distiller.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def png(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def load(
    send: Callable[[Any, list[bytes]], None],
    make_client: Callable[[], Any],
    *,
    clients: int,
    per_request: int,
    seconds: float,
) -> dict[str, float]:
    """``clients`` threads, each sending ``per_request`` images per request for ``seconds``."""
    images = [png(i) for i in range(64)]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(w: int) -> None:
        http = make_client()
        i = w
        while time.monotonic() < stop:
            batch = [images[(i + j) % len(images)] for j in range(per_request)]
            i += per_request
            t0 = time.perf_counter()
            try:
                send(http, batch)
            except Exception:  # noqa: BLE001 - counted, reported
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
        http.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    pick = lambda q: 1000 * lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    return {
        "images_per_s": round(len(lat) * per_request / wall, 1),
        "requests": len(lat),
        "errors": errors[0],
        "p50_ms": round(pick(0.5), 1),
        "p95_ms": round(pick(0.95), 1),
        "mean_ms": round(1000 * statistics.fmean(lat), 1) if lat else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "interop")
    p.add_argument("--venv", type=Path, default=None, help="Infinity's venv (default OUT/venv)")
    p.add_argument("--torch", default=None, help="torch requirement installed first in the venv")
    p.add_argument("--target-domain", default="sketch")
    p.add_argument("--views", default="1", help="views per training image of the fetched plan")
    p.add_argument("--seconds", type=float, default=15.0, help="duration of each load")
    p.add_argument("--build-model", type=Path, help=argparse.SUPPRESS)  # step 2, in the venv
    p.add_argument("--bpe", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.build_model:
        build_model(args.build_model, args.bpe)
        return 0

    import httpx
    import open_clip

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs, {sys.platform}, load {load_avg}"}
    t0 = time.perf_counter()
    py = ensure_venv(args.venv or out / "venv", args.torch)
    report["venv_seconds"] = round(time.perf_counter() - t0, 1)
    model_dir = out / "hf-clip"
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    subprocess.run(
        [str(py), __file__, "--build-model", str(model_dir), "--bpe", str(bpe)], check=True
    )
    card = json.loads((model_dir / "vl2v_card.json").read_text())
    card_file = out / "card.json"
    card_file.write_text(json.dumps(card))

    port = free_port()
    inf_log = out / "infinity.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "1",
           "INFINITY_ANONYMOUS_USAGE_STATS": "0"}  # fmt: skip
    infinity = subprocess.Popen(
        [str(py.parent / "infinity_emb"), "v2", "--model-id", str(model_dir), "--engine",
         "torch", "--device", "cpu", "--served-model-name", MODEL_NAME, "--batch-size", "32",
         "--port", str(port), "--host", "127.0.0.1", "--no-model-warmup"],
        stdout=inf_log.open("w"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    ok = True
    try:
        wait_http(base + "/health", 300, infinity, inf_log)
        cache = out / "cache-infinity"
        fetch = [
            "fetch", "--api", "openai", "--endpoint", base, "--model", MODEL_NAME,
            "--card", str(card_file), "--data", "demo", "--target-domain", args.target_domain,
            "--views", args.views, "--cache-dir", str(cache), "--no-progress",
        ]  # fmt: skip
        runs = []
        for attempt in ("first", "rerun"):
            t = time.perf_counter()
            code, text = client(*fetch)
            done = re.search(r"done: sent (\d+) queries .*?(\d+) cache hits", text)
            runs.append(
                {
                    "run": attempt,
                    "exit": code,
                    "seconds": round(time.perf_counter() - t, 1),
                    "sent": int(done.group(1)) if done else None,
                    "cache_hits": int(done.group(2)) if done else None,
                }
            )
            print(f"fetch ({attempt}): exit {code}; " + (done.group(0) if done else text[-800:]))
        report["fetch"] = runs
        ok = runs[0]["exit"] == 0 and runs[1]["exit"] == 0 and runs[1]["sent"] == 0
        ok = ok and bool(runs[0]["sent"])

        from demo_world.models import MODEL_CONFIG_DIR
        from vendor_service.process import start_vendor

        vendor = start_vendor(
            out / "vendor", model="vl2v-demo", config_dirs=[MODEL_CONFIG_DIR], max_batch=32,
            inference_threads=1, log_level="warning", cwd=REPO,
        )  # fmt: skip
        try:
            key = vendor.create_key(10_000_000, rate_limit_rps=100_000, rate_limit_burst=100_000)
            auth = {"Authorization": f"Bearer {key}"}
            probe = httpx.post(
                vendor.base_url + "/v1/embeddings",
                json={"model": "vl2v-demo", "input": ["a photo of a house"]},
                headers=auth,
                timeout=30,
            )
            vendor_openai = probe.status_code == 200
            report["vendor_route"] = "/v1/embeddings" if vendor_openai else "/v1/embeddings/images"

            def send_vendor(http: httpx.Client, batch: list[bytes]) -> None:
                if vendor_openai:
                    body = {"model": "vl2v-demo", "modality": "image", "encoding_format": "base64",
                            "input": ["data:image/png;base64," + base64.b64encode(b).decode()
                                      for b in batch]}  # fmt: skip
                    r = http.post("/v1/embeddings", json=body)
                else:
                    body = {"images": [base64.b64encode(b).decode() for b in batch],
                            "encoding_format": "base64"}  # fmt: skip
                    r = http.post("/v1/embeddings/images", json=body)
                r.raise_for_status()

            def send_infinity(http: httpx.Client, batch: list[bytes]) -> None:
                body = {"model": MODEL_NAME, "modality": "image", "encoding_format": "base64",
                        "input": ["data:image/png;base64," + base64.b64encode(b).decode()
                                  for b in batch]}  # fmt: skip
                http.post("/embeddings", json=body).raise_for_status()

            servers = {
                "vendor": (send_vendor, lambda: httpx.Client(base_url=vendor.base_url,
                                                             headers=auth, timeout=60)),
                "infinity": (send_infinity, lambda: httpx.Client(base_url=base, timeout=60)),
            }  # fmt: skip
            report["load"] = {}
            shapes = (("16 clients x 1 image", 16, 1), ("4 clients x 32 images", 4, 32))
            for shape, clients, per in shapes:
                for name, (send, make) in servers.items():
                    load(send, make, clients=clients, per_request=per, seconds=2.0)  # warm-up
                    res = load(send, make, clients=clients, per_request=per, seconds=args.seconds)
                    report["load"].setdefault(shape, {})[name] = res
                    print(f"{shape:>22} | {name:8s} | {res}")
                    ok = ok and res["errors"] == 0
        finally:
            vendor.stop()
    finally:
        infinity.terminate()
        try:
            infinity.wait(30)
        except subprocess.TimeoutExpired:
            infinity.kill()
    report["ok"] = ok
    (out / "infinity.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"{'all checks hold' if ok else 'A CHECK FAILED'}; report: {out / 'infinity.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
