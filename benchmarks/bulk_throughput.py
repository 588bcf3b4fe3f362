"""Bulk compression throughput: the same store coded three ways side by side in one run.

    .venv/bin/python benchmarks/bulk_throughput.py [--images N] [--width W --height H] [--model CKPT]

1. plain `texpress compress STORE -o OUT` in one process (wall time of the command);
2. `run_bulk` with 1 worker; 3. `run_bulk` with 2 workers (one local Ray with 2 CPUs for both).
The model-only bound is the encode time (load + encode, in this process, one thread) summed over
the images (the faster of a pass before and a pass after the bulk runs). Each bulk run reports its whole wall time and its steady rate (images over the span
from the first to the last image the actors coded, so Ray and actor start-up and model loading are
left out).
Targets (docs/bulk.md): bulk 1 worker >= 80 % of the model-only bound; 2 workers >= 1.7x 1 worker.
Prints a table and writes benchmarks/results/bulk_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)

RESULTS = Path(__file__).parent / "results" / "bulk_throughput.json"


def make_store(root: Path, n: int, width: int, height: int) -> list[Path]:
    """n photo crops (the sample photos, cut into width x height tiles, as JPEG q90)."""
    from PIL import Image

    from texpress.samples import sample_photos

    root.mkdir(parents=True)
    paths = []
    sources = [Image.open(p).convert("RGB") for p in sample_photos()]
    for i in range(n):
        im = sources[i % len(sources)]
        cols = max(1, im.width // width)
        k = i // len(sources)
        x, y = (k % cols) * width % max(1, im.width - width + 1), (k // cols) * height % max(1, im.height - height + 1)
        path = root / f"{i // 50:02d}" / f"img{i:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        im.crop((x, y, x + width, y + height)).save(path, quality=90)
        paths.append(path)
    return paths


def model_bound(ckpt: Path, paths: list[Path]) -> float:
    """Seconds of codec.compress summed over the images, in this process with one torch thread."""
    import torch

    from texpress.codec.api import Codec

    torch.set_num_threads(1)
    codec = Codec.from_checkpoint(ckpt)
    codec.compress(paths[0].read_bytes())  # warm-up
    total = 0.0
    for p in paths:
        data = p.read_bytes()
        t = time.perf_counter()
        codec.compress(data)
        total += time.perf_counter() - t
    return total


def plain_cli(ckpt: Path, store: Path, out: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "texpress.cli", "compress", str(store), "-o", str(out), "-m", str(ckpt)],
                   check=True, env=env, capture_output=True)
    return time.perf_counter() - t


def bulk(ckpt: Path, store: Path, out: Path, workers: int) -> dict:
    from texpress.bulk.config import BulkConfig
    from texpress.bulk.job import run_bulk

    report = run_bulk("compress", [str(store)], str(out), ckpt, BulkConfig(workers=workers, batch_size=4))
    span = report.coding_span_s
    steady = (report.coded - 1) / span if span > 0 else float("nan")
    return {"workers": workers, "images": report.coded, "wall_s": report.wall_s,
            "images_per_s": report.images_per_s, "steady_images_per_s": steady, "mean_bpp": report.mean_bpp}


def driver_ceiling(work: Path, rows: int = 20000) -> float:
    """Rows per second the driver can record (row conversion, manifest records, part writes): with
    enough workers, this bounds a job whose outputs the workers write themselves."""
    import numpy as np

    from texpress.bulk import manifest as mf
    from texpress.bulk.job import _record, _rows
    from texpress.bulk.store import Store

    recorder = mf.Recorder(Store(str(work / "driver")))
    batch = {"unit": np.arange(64), "index": np.arange(64), "key": np.array([f"cams/{i}/img{i:05d}.jpg" for i in range(64)], object),
             "source": np.array([f"/data/store/cams/{i}/img{i:05d}.jpg" for i in range(64)], object),
             "status": np.array(["done"] * 64, object), "sha256": np.array(["ab" * 32] * 64, object),
             "size_in": np.full(64, 50000), "data": np.array([None] * 64, object), "reason": np.array([""] * 64, object),
             "detail": np.array([""] * 64, object), "count": np.zeros(64, int), "output": np.array(["x.tpx"] * 64, object),
             "size_out": np.full(64, 3000), "pixels": np.full(64, 49152)}
    t = time.perf_counter()
    for _ in range(rows // 64):
        recorder.add([_record(r) for r in _rows(batch)])
    recorder.flush()
    return (rows // 64 * 64) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=240)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: an untrained lite model)")
    args = ap.parse_args()

    import ray
    from rich.console import Console
    from rich.table import Table

    from texpress.codec.checkpoint import build_model, save_checkpoint
    from texpress.codec.config import get_preset

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(tempfile.mkdtemp(prefix="tx-bulk-bench-"))
    ray_tmp = tempfile.mkdtemp(prefix="txbb-", dir="/tmp")
    try:
        ckpt = args.model or work / "lite.ckpt"
        if args.model is None:
            save_checkpoint(build_model(get_preset("lite"), seed=0), ckpt)
        paths = make_store(work / "store", args.images, args.width, args.height)
        bound_s = model_bound(ckpt, paths)
        ceiling = driver_ceiling(work)
        plain_s = plain_cli(ckpt, work / "store", work / "plain")
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_tmp,
                 logging_config=ray.LoggingConfig(log_level="ERROR"),
                 runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::FutureWarning"}})
        one = bulk(ckpt, work / "store", work / "bulk1", 1)
        two = bulk(ckpt, work / "store", work / "bulk2", 2)
        bound_s = min(bound_s, model_bound(ckpt, paths))  # the machine is shared: the quieter of two passes
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    n = args.images
    bound = n / bound_s
    rows = [("model-only bound (encode time summed)", n / bound_s, n / bound_s, bound_s),
            ("texpress compress (1 process)", n / plain_s, float("nan"), plain_s),
            ("bulk, 1 worker", one["images_per_s"], one["steady_images_per_s"], one["wall_s"]),
            ("bulk, 2 workers", two["images_per_s"], two["steady_images_per_s"], two["wall_s"])]
    table = Table(title=f"bulk throughput: {n} images of {args.width}x{args.height}, lite, this machine "
                        f"({os.cpu_count()} CPUs, shared)")
    for col in ("way", "images/s (wall)", "images/s (steady)", "seconds", "steady / bound"):
        table.add_column(col, justify="right" if col != "way" else "left")
    for name, wall_rate, steady, secs in rows:
        table.add_row(name, f"{wall_rate:.2f}", f"{steady:.2f}", f"{secs:.1f}", f"{steady / bound:.2f}")
    console = Console(width=max(Console().width, 120))
    console.print(table)
    scaling_steady = two["steady_images_per_s"] / one["steady_images_per_s"]
    scaling_wall = two["images_per_s"] / one["images_per_s"]
    console.print(f"bulk 1 worker / model-only bound: {one['steady_images_per_s'] / bound:.2f} steady, "
                  f"{one['images_per_s'] / bound:.2f} wall (target >= 0.80)")
    console.print(f"2 workers / 1 worker: {scaling_steady:.2f}x steady, {scaling_wall:.2f}x wall (target >= 1.7x)")
    per_worker = one["steady_images_per_s"]
    simulated = {w: min(w * per_worker, ceiling) for w in (1, 2, 4, 8, 16, 32, 64, 128, 256)}
    console.print(f"driver ceiling (recording only): {ceiling:,.0f} images/s; simulated cluster throughput at "
                  f"{per_worker:.2f} images/s per worker: " + ", ".join(f"{w}: {v:,.0f}" for w, v in simulated.items()))
    payload = {"benchmark": "bulk_throughput", "images": n, "size": [args.width, args.height],
               "model": str(args.model or "untrained lite"),
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "ray": ray.__version__,
                           "load_average_1m": os.getloadavg()[0]},
               "model_only": {"seconds": bound_s, "images_per_s": bound},
               "plain_compress": {"seconds": plain_s, "images_per_s": n / plain_s},
               "bulk_1": one, "bulk_2": two,
               "bulk1_vs_bound": {"steady": one["steady_images_per_s"] / bound, "wall": one["images_per_s"] / bound},
               "scaling_1_to_2": {"steady": scaling_steady, "wall": scaling_wall},
               "driver_ceiling_images_per_s": ceiling,
               "simulated_cluster_images_per_s": {str(w): v for w, v in simulated.items()}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_name(f".{RESULTS.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, RESULTS)


if __name__ == "__main__":
    main()
