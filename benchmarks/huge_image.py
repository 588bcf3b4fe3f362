"""A 100-megapixel photo through `texpress compress` and `texpress decompress` in bounded memory,
and the seams of tiled coding measured against untiled coding of a crop.

    .venv/bin/python benchmarks/huge_image.py [--model CKPT] [--width 12240 --height 8160]

Each command runs in its own child process, whose peak RSS (ru_maxrss) is reported; the target is
under 2 GB each (lite preset). The seam check codes a 2048x2048 crop that straddles two tile
boundaries in one piece and compares it, away from the crop's own borders, with the same pixels
of the tiled decode (PSNR over the whole compared window and over 16-px bands around the seams).
Prints a table and writes benchmarks/results/huge_image.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

warnings.filterwarnings("ignore", category=FutureWarning)

from texpress.codec import tiling  # noqa: E402
from texpress.samples import sample_photos  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "huge_image.json"
CHILD = r"""
import resource, sys, time, warnings
warnings.filterwarnings("ignore")
from texpress.cli import main
sys.argv = ["texpress", *sys.argv[1:]]
t = time.perf_counter()
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print(f"BENCH {time.perf_counter() - t:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""
CROP = (512, 512, 2560, 2560)  # top, left, bottom, right: tile boundaries at 1024 and 2048 inside
MARGIN = 384  # pixels of the crop's border left out (the crop's own context differs there)


def make_photo(path: Path, width: int, height: int) -> None:
    """A mosaic of the bundled photos, each enlarged with Lanczos, saved as JPEG q92."""
    photos = [Image.open(p).convert("RGB") for p in sample_photos()]
    canvas = Image.new("RGB", (width, height))
    cols, rows = 4, 3
    w, h = -(-width // cols), -(-height // rows)
    for i in range(rows * cols):
        tile = photos[i % len(photos)].resize((w, h), Image.LANCZOS)
        canvas.paste(tile, ((i % cols) * w, (i // cols) * h))
        del tile
    canvas.save(path, quality=92, subsampling=0)


def run_cli(args: list[str], threads: int) -> dict:
    env = {**os.environ, "TEXPRESS_MAX_PIXELS": str(200_000_000), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"texpress {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    seconds, rss_kb = line.split()[1:]
    return {"seconds": float(seconds), "peak_rss_mb": int(rss_kb) / 1024}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def seam_check(model: Path, photo: Path, decoded: Path) -> dict:
    import torch

    from texpress.codec.api import Codec

    top, left, bottom, right = CROP
    Image.MAX_IMAGE_PIXELS = None
    big = Image.open(photo)
    torch.set_num_threads(1)
    crop = big.crop((left, top, right, bottom))
    codec = Codec.from_checkpoint(model)
    untiled = np.asarray(codec.decompress(codec.compress(crop)))
    tiled = np.asarray(Image.open(decoded).crop((left, top, right, bottom)))
    m = MARGIN
    window = (slice(m, -m), slice(m, -m))
    seams = [b - top for b in range(0, bottom, tiling.TILE) if top + m < b < bottom - m]
    band = np.zeros(untiled.shape[:2], bool)
    for s in seams:
        band[s - 8: s + 8, :] = True
        band[:, s - 8: s + 8] = True
    band &= np.pad(np.ones((bottom - top - 2 * m, right - left - 2 * m), bool), m)
    finite = lambda v: None if v == float("inf") else v  # noqa: E731  (JSON has no infinity)
    return {"crop": list(CROP), "margin": m, "seams_at": [s + top for s in seams],
            "identical": bool(np.array_equal(tiled[window], untiled[window])),
            "psnr_window_db": finite(psnr(tiled[window], untiled[window])),
            "psnr_seam_bands_db": finite(psnr(tiled[band], untiled[band])),
            "max_abs_diff": int(np.abs(tiled[window].astype(int) - untiled[window].astype(int)).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="checkpoint (default: an untrained lite model)")
    ap.add_argument("--width", type=int, default=12240)
    ap.add_argument("--height", type=int, default=8160)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the children (the machine is shared)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="texpress-huge-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            model = work / "lite.ckpt"
            subprocess.run([sys.executable, "-m", "texpress.cli", "models", "init", "-p", "lite", "-o", str(model)],
                           check=True, capture_output=True)
        photo = work / "huge.jpg"
        t = time.perf_counter()
        make_photo(photo, args.width, args.height)
        print(f"made {args.width}x{args.height} photo ({photo.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.0f} s")
        enc = run_cli(["compress", str(photo), "-o", str(work / "tpx"), "-m", str(model)], args.threads)
        tpx = work / "tpx" / "huge.tpx"
        dec = run_cli(["decompress", str(tpx), "-o", str(work / "png"), "-m", str(model)], args.threads)
        png = work / "png" / "huge.png"
        seams = seam_check(model, photo, png)
        megapixels = args.width * args.height / 1e6
        result = {
            "image": f"{args.width}x{args.height}", "megapixels": megapixels,
            "model": "untrained lite" if args.model is None else str(args.model),
            "tile": tiling.TILE, "tpx_bytes": tpx.stat().st_size, "png_bytes": png.stat().st_size,
            "bpp": 8 * tpx.stat().st_size / (megapixels * 1e6),
            "compress": enc, "decompress": dec, "seams": seams,
            "target_peak_rss_mb": 2048, "threads": args.threads, "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
            "python": platform.python_version(),
        }
    print(f"{'step':<12}{'seconds':>10}{'peak RSS MB':>14}")
    for name in ("compress", "decompress"):
        print(f"{name:<12}{result[name]['seconds']:>10.1f}{result[name]['peak_rss_mb']:>14.0f}")
    print(f"seams vs untiled coding of a crop: identical {seams['identical']}, PSNR window "
          f"{seams['psnr_window_db']} dB, seam bands {seams['psnr_seam_bands_db']} dB (None: identical), "
          f"max diff {seams['max_abs_diff']}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
