"""Data pipeline throughput: sharding (images/s, MB/s) beside plain `tar` over the same files in
the same run, and the training loader's 256x256 crops/s with 2 DataLoader workers.

    .venv/bin/python benchmarks/data_throughput.py [--data DIR] [--ingest-workers 1,2] [--batches N]

--data defaults to ../shared/data/train when it exists, else the 11 bundled sample photos.
Prints a table and writes benchmarks/results/data_throughput.json.
Targets on the 2-core machine: the 1,383-image training folder shards in under 60 s; the loader
delivers at least 400 crops/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from texpress.data.config import ShardConfig
from texpress.data.ingest import ingest
from texpress.data.loader import list_shards, make_train_loader
from texpress.data.sources import is_archive

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "train"
RESULTS = ROOT / "benchmarks" / "results" / "data_throughput.json"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _warm(files: list[Path]) -> None:
    """Read every file once so tar and ingest both start from the page cache."""
    for p in files:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


def bench_tar(src: Path, files: list[Path], work: Path) -> float:
    listing = work / "files.txt"
    listing.write_text("".join(f"{p.relative_to(src)}\n" for p in files))
    start = time.perf_counter()
    subprocess.run(["tar", "-cf", str(work / "plain.tar"), "-C", str(src), "-T", str(listing)], check=True)
    return time.perf_counter() - start


def bench_ingest(sources: list[str], out: Path, workers: int) -> tuple[float, dict]:
    start = time.perf_counter()
    result = ingest(sources, out, ShardConfig(workers=workers))
    return time.perf_counter() - start, result.manifest


def bench_loader(shards: list[str], batches: int, batch_size: int, patch: int, workers: int) -> dict:
    """Wall-clock crops/s with `workers` DataLoader workers, after the first batch (start-up)."""
    loader = make_train_loader(shards, patch_size=patch, batch_size=batch_size, num_workers=workers,
                               batches_per_epoch=batches + 1)
    start = time.perf_counter()
    it = iter(loader)
    next(it)  # worker start-up and the first shuffle-buffer fill
    first = time.perf_counter() - start
    t = time.perf_counter()
    n = sum(b.shape[0] for b in it)
    steady = time.perf_counter() - t
    return {"crops": n, "seconds": steady, "crops_per_s": n / steady, "first_batch_s": first,
            "patch": patch, "batch_size": batch_size, "num_workers": workers}


def bench_loader_per_core(shards: list[str], batches: int, batch_size: int, patch: int) -> dict:
    """Crops per CPU-second of one core (in process, one torch thread): independent of other load."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loader = make_train_loader(shards, patch_size=patch, batch_size=batch_size, num_workers=0,
                                   batches_per_epoch=batches + 1)
        it = iter(loader)
        next(it)
        cpu, wall = time.process_time(), time.perf_counter()
        n = sum(b.shape[0] for b in it)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        torch.set_num_threads(threads)
    return {"crops": n, "cpu_seconds": cpu, "wall_seconds": wall, "crops_per_cpu_s": n / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA if DEFAULT_DATA.is_dir() else None)
    parser.add_argument("--ingest-workers", default="1,2", help="comma-separated worker counts to time")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console()
    load_start = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="texpress-bench-") as tmp:
        work = Path(tmp)
        if args.data is None:
            from texpress.samples import sample_photos

            src = work / "samples"
            src.mkdir()
            for p in sample_photos():
                shutil.copy(p, src / p.name)
            data_name = "bundled sample photos"
        else:
            src = args.data.resolve()
            data_name = str(args.data)
        files = [p for p in _files(src) if not is_archive(p.name)]
        total_bytes = sum(p.stat().st_size for p in files)
        _warm(files)
        tar_s = bench_tar(src, files, work)

        runs = []
        manifest: dict = {}
        for workers in [int(w) for w in args.ingest_workers.split(",") if w]:
            out = work / f"shards-{workers}"
            seconds, manifest = bench_ingest([str(src)], out, workers)
            runs.append({"workers": workers, "seconds": seconds, "images_per_s": len(files) / seconds,
                         "mb_per_s": total_bytes / 1e6 / seconds, "vs_tar": seconds / tar_s,
                         "dataset_version": manifest["dataset_version"]})
        same = len({r["dataset_version"] for r in runs}) == 1
        train_shards = list_shards(str(work / f"shards-{runs[0]['workers']}"), "train")
        loader = bench_loader(train_shards, args.batches, args.batch_size, args.patch, args.loader_workers)
        per_core = bench_loader_per_core(train_shards, args.batches // 2, args.batch_size, args.patch)

    table = Table(title=f"data throughput on {data_name}: {len(files):,} files, {total_bytes / 1e6:.1f} MB",
                  title_justify="left")
    for col in ("step", "seconds", "images/s", "MB/s", "x plain tar", "note"):
        table.add_column(col, justify="left" if col in ("step", "note") else "right")
    table.add_row("plain tar -cf", f"{tar_s:.2f}", f"{len(files) / tar_s:,.0f}", f"{total_bytes / 1e6 / tar_s:,.0f}", "1.0",
                  "copies bytes only")
    for r in runs:
        table.add_row(f"ingest, {r['workers']} worker(s)", f"{r['seconds']:.2f}", f"{r['images_per_s']:,.0f}",
                      f"{r['mb_per_s']:,.1f}", f"{r['vs_tar']:.1f}",
                      "decode + validate + hash + shard")
    table.add_row(f"loader {args.patch}x{args.patch}, {args.loader_workers} workers", f"{loader['seconds']:.2f}",
                  f"{loader['crops_per_s']:,.0f} crops/s", "", "",
                  f"{loader['crops']} crops; first batch {loader['first_batch_s']:.1f} s")
    table.add_row("loader, per CPU core", f"{per_core['cpu_seconds']:.2f} cpu", f"{per_core['crops_per_cpu_s']:,.0f} crops/cpu-s",
                  "", "", "1 process, 1 torch thread: what each worker can do with a core to itself")
    console.print(table)
    console.print(f"load average at start {load_start[0]:.2f}, at end {os.getloadavg()[0]:.2f} "
                  f"({os.cpu_count()} CPUs; other processes share them)")
    console.print(f"accepted {manifest['accepted']}, rejected {manifest['rejected']}, duplicates "
                  f"{manifest['duplicates']}; splits {manifest['splits']}; same shards for every worker count: {same}")

    result = {
        "data": data_name,
        "files": len(files),
        "bytes": total_bytes,
        "tar_seconds": tar_s,
        "ingest": runs,
        "ingest_outputs_identical": same,
        "manifest": {k: manifest[k] for k in ("seen", "accepted", "rejected", "duplicates", "splits", "shards", "bytes")},
        "loader": loader,
        "loader_per_core": per_core,
        "targets": {"shard_seconds_lt": 60, "loader_crops_per_s_ge": 400},
        "machine": {"cpus": os.cpu_count(), "load_avg_start": load_start, "load_avg_end": os.getloadavg(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
