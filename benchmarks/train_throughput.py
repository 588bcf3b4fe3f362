"""Training throughput on Ray Train with 1 and with 2 workers, side by side in one run on one local Ray.

    .venv/bin/python benchmarks/train_throughput.py [--shards DIR] [--rd-steps 40] [--gan-steps 10]
        [--patch 128] [--batch 4] [--preset lite]

Per worker: samples/s (over the time spent in training steps: data + forward/backward + logging),
samples/s of each phase (rate-distortion only; adversarial, which adds the discriminator), peak
memory (the worker process, and its DataLoader processes), and the time per step split into data
loading, forward/backward (generator, discriminator and aux updates) and logging (MLflow, progress).
Scaling efficiency = total samples/s with 2 workers / samples/s with 1 worker / 2. The two worker
counts alternate (--repeats times each) and the best run of each is reported. Without
--shards, the sample photos bundled with scikit-image/scikit-learn are ingested into a temp dir.
Prints a table and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"


def make_shards(root: Path) -> Path:
    from texpress.data.config import ShardConfig
    from texpress.data.ingest import ingest
    from texpress.samples import sample_photos

    out = root / "shards"
    ingest([str(p) for p in sample_photos()], out, ShardConfig(min_side=128, val_frac=0.2, test_frac=0.1))
    return out


def summarise(workers: int, metrics: dict, batch: int, wall: float) -> dict:
    rows = []
    for r in metrics["ranks"]:
        steps = r["steps_run"]
        rd = r["rd_steps_run"]
        gan = steps - rd
        loop_s = r["data_s"] + r["compute_s"] + r["log_s"]
        rows.append({
            "rank": r["rank"],
            "samples_per_s": r["samples"] / loop_s,
            "samples_per_s_rd": rd * batch / r["compute_rd_s"] if rd else None,
            "samples_per_s_gan": gan * batch / r["compute_gan_s"] if gan else None,
            "ms_per_step_data": 1000 * r["data_s"] / steps,
            "ms_per_step_fwd_bwd": 1000 * r["compute_s"] / steps,
            "ms_per_step_logging": 1000 * r["log_s"] / steps,
            "peak_rss_mb": r["max_rss_mb"],
            "peak_rss_loader_mb": r["max_rss_children_mb"],
            "steps": steps,
        })
    mean = {k: sum(row[k] for row in rows) / len(rows) for k in rows[0]
            if k != "rank" and all(row[k] is not None for row in rows)}
    return {"workers": workers, "wall_s": wall, "per_worker": rows, "mean_per_worker": mean,
            "total_samples_per_s": sum(row["samples_per_s"] for row in rows),
            "val_bpp": metrics.get("val_bpp"), "val_psnr": metrics.get("val_psnr")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=Path)
    ap.add_argument("--rd-steps", type=int, default=40)
    ap.add_argument("--gan-steps", type=int, default=10)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4, help="per worker")
    ap.add_argument("--preset", default="lite")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each worker count, alternating; best kept")
    args = ap.parse_args()

    import ray
    import torch
    from rich.console import Console
    from rich.table import Table

    from texpress.data.config import LoaderConfig
    from texpress.train.config import TrainConfig
    from texpress.train.ray_driver import run_training

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    work = Path(tempfile.mkdtemp(prefix="tx-bench-"))
    ray_tmp = tempfile.mkdtemp(prefix="txb-", dir="/tmp")
    results = []
    try:
        shards = args.shards or make_shards(work)
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_tmp,
                 logging_config=ray.LoggingConfig(log_level="ERROR"))
        total = args.rd_steps + args.gan_steps
        loader = LoaderConfig(patch_size=args.patch, batch_size=args.batch, num_workers=1, batches_per_epoch=100)
        for repeat in range(args.repeats):  # alternate 1 and 2 workers; the machine is shared and noisy
            for workers in (1, 2):
                cfg = TrainConfig(preset=args.preset, rd_steps=args.rd_steps, gan_steps=args.gan_steps,
                                  workers=workers, checkpoint_every=total, val_every=total, val_images=2,
                                  grid_images=1, log_every=10, storage_path=str(work / "ray"))
                t = time.perf_counter()
                outcome = run_training(cfg, loader, shards, work / f"out{workers}-{repeat}",
                                       run_name=f"bench-{workers}-{repeat}", tracking_dir=work)
                results.append(summarise(workers, outcome.metrics, args.batch, time.perf_counter() - t))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    best = {w: max((r for r in results if r["workers"] == w), key=lambda r: r["total_samples_per_s"]) for w in (1, 2)}
    one, two = best[1], best[2]
    efficiency = two["total_samples_per_s"] / one["total_samples_per_s"] / 2
    table = Table(title=f"train throughput: {args.preset}, {args.patch}px x {args.batch} per worker, "
                        f"{args.rd_steps} RD + {args.gan_steps} adversarial steps (best of {args.repeats})")
    for col in ("workers", "samples/s/worker", "RD", "GAN", "data ms/step", "fwd+bwd ms/step", "log ms/step",
                "peak RSS MB", "total samples/s"):
        table.add_column(col, justify="right")
    for res in (one, two):
        m = res["mean_per_worker"]
        table.add_row(str(res["workers"]), f"{m['samples_per_s']:.2f}", f"{m.get('samples_per_s_rd', 0):.2f}",
                      f"{m.get('samples_per_s_gan', 0):.2f}", f"{m['ms_per_step_data']:.1f}",
                      f"{m['ms_per_step_fwd_bwd']:.1f}", f"{m['ms_per_step_logging']:.1f}",
                      f"{m['peak_rss_mb']:.0f}+{m['peak_rss_loader_mb']:.0f}", f"{res['total_samples_per_s']:.2f}")
    console = Console(width=max(Console().width, 130))
    console.print(table)
    console.print(f"scaling efficiency 1 -> 2 workers: {efficiency:.2f} (1.0 = linear)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "train_throughput", "preset": args.preset, "patch": args.patch,
               "batch_per_worker": args.batch, "rd_steps": args.rd_steps, "gan_steps": args.gan_steps,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                           "ray": ray.__version__, "threads_per_worker": 1},
               "repeats": args.repeats, "best": {"1": one, "2": two}, "all_runs": results,
               "scaling_efficiency": efficiency}
    tmp = RESULTS.with_name(f".{RESULTS.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
