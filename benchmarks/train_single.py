"""Throughput of the single-process trainer (`--backend torch`): photos cropped on the device against
the WebDataset shard loader, side by side in one run on one device.

    PYTHONPATH=src python benchmarks/train_single.py [--device cuda] [--preset lite] [--steps 30]
        [--batch 4] [--crop 128] [--photos DIR] [--repeats 2] [--amp]

Each arm trains the same rate-distortion steps from scratch (no validation, no MLflow, one
checkpoint at the end) and reports steps/s and Mpx/s over the training steps (data + step), the
data time per step and the device memory held by the photos. Arms: `device-crops` (a photo
folder decoded once onto the device), `shards-w0` / `shards-w2` (the same photos ingested into
shards, read by the WebDataset loader with 0 / 2 DataLoader processes; only where webdataset is
installed). The arms alternate (--repeats times each) and the best run of each is kept. Without
--photos the sample photos of scikit-image / scikit-learn are used. Prints a table and writes
benchmarks/results/train_single.json.
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

RESULTS = Path(__file__).parent / "results" / "train_single.json"


def photo_folder(root: Path, source: Path | None, crop: int) -> Path:
    from PIL import Image

    from texpress.samples import sample_photos

    folder = root / "photos"
    folder.mkdir()
    files = sorted(p for p in source.iterdir() if p.is_file()) if source else sample_photos()
    for p in files:
        try:
            with Image.open(p) as im:
                if min(im.size) >= crop:
                    shutil.copy(p, folder / p.name)
        except OSError:
            continue
    return folder


def shards_from(folder: Path, root: Path, crop: int) -> Path | None:
    try:
        import webdataset  # noqa: F401
    except ImportError:
        return None
    from texpress.data.config import ShardConfig
    from texpress.data.ingest import ingest

    out = root / "shards"
    ingest([str(folder)], out, ShardConfig(min_side=crop, val_frac=0.0, test_frac=0.0))
    return out


def run_arm(name: str, args, folder: Path, shards: Path | None, work: Path) -> dict:
    from texpress.data.config import LoaderConfig
    from texpress.train.config import TrainConfig
    from texpress.train.single_process import train_single

    cfg = TrainConfig(preset=args.preset, rd_steps=args.steps, gan_steps=0, checkpoint_every=args.steps,
                      val_images=0, log_every=max(1, args.steps))
    workers = int(name.split("-w")[1]) if name.startswith("shards") else 0
    loader = LoaderConfig(patch_size=args.crop, batch_size=args.batch, num_workers=workers, batches_per_epoch=100)
    out = work / f"out-{name}-{time.monotonic_ns()}"
    t = time.perf_counter()
    o = train_single(cfg, loader, out, images=folder if name == "device-crops" else None,
                     shards=str(shards) if name.startswith("shards") else None, device=args.device, amp=args.amp,
                     mlflow=False)
    wall = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    return {"arm": name, "wall_s": wall, **o.throughput}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--preset", default="lite")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--photos", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--amp", action="store_true")
    args = ap.parse_args()

    import torch

    from texpress.train.device import pick_device

    device = pick_device(args.device)
    args.device = str(device)
    work = Path(tempfile.mkdtemp(prefix="tx-bench-single-"))
    results = []
    try:
        folder = photo_folder(work, args.photos, args.crop)
        shards = shards_from(folder, work, args.crop)
        arms = ["device-crops"] + (["shards-w0", "shards-w2"] if shards else [])
        for _ in range(args.repeats):
            for arm in arms:
                results.append(run_arm(arm, args, folder, shards, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {arm: max((r for r in results if r["arm"] == arm), key=lambda r: r["steps_per_s"])
            for arm in dict.fromkeys(r["arm"] for r in results)}
    base = best["device-crops"]["steps_per_s"]
    title = (f"single-process trainer on {device}: {args.preset}, {args.batch} x {args.crop}-px crops, "
             f"{args.steps} steps{' (bf16 autocast)' if args.amp else ''}, best of {args.repeats}")
    print(title)
    print(f"{'arm':<14} {'steps/s':>9} {'Mpx/s':>9} {'vs device-crops':>16}")
    for arm, r in best.items():
        print(f"{arm:<14} {r['steps_per_s']:>9.3g} {r['mpx_per_s']:>9.3g} {r['steps_per_s'] / base:>16.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "train_single", "device": str(device), "preset": args.preset, "batch": args.batch,
               "crop": args.crop, "steps": args.steps, "amp": args.amp, "repeats": args.repeats,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
               "best": best, "all_runs": results}
    tmp = RESULTS.with_name(f".{RESULTS.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
