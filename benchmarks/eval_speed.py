"""How long a full evaluation takes: one model and the six classical baselines at six qualities each
on 24 images of 768x512 (Kodak's size), every metric (bpp, PSNR, MS-SSIM, the three texture scores),
the figures and the reports included. Target: under 10 minutes on the shared 2-core machine.

    .venv/bin/python benchmarks/eval_speed.py [--model CKPT | --preset lite] [--images N] [--source DIR]

Images: Kodak is not available here. By default the 24 first Sun-Hays 80 photos of
../shared/data/train/sun-hays80 (about 1024x768 JPEGs), centre-cropped to 768x512 (portrait ones
rotated first); without that folder, the bundled sample photos resized (Lanczos) to cover 768x512
and centre-cropped, repeated to make up the count. They are written as PNG, so every codec starts
from the same lossless pixels. The model is an untrained `lite` checkpoint unless --model is given
(coding time does not depend on training).

Prints a table (where the time went: each codec's encode + decode, the model, metrics and reports,
as shares of the one run) and writes benchmarks/results/eval_speed.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

from PIL import Image

warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 768, 512
TARGET_S = 600.0
SUN_HAYS = ROOT.parent / "shared" / "data" / "train" / "sun-hays80"


def _cover_crop(im: Image.Image) -> Image.Image:
    im = im.convert("RGB")
    if im.height > im.width:
        im = im.transpose(Image.Transpose.ROTATE_90)
    scale = max(WIDTH / im.width, HEIGHT / im.height)
    if scale > 1:
        im = im.resize((round(im.width * scale + 0.5), round(im.height * scale + 0.5)), Image.LANCZOS)
    left, top = (im.width - WIDTH) // 2, (im.height - HEIGHT) // 2
    return im.crop((left, top, left + WIDTH, top + HEIGHT))


def make_images(folder: Path, count: int, source: Path | None) -> tuple[list[Path], str]:
    source = source or SUN_HAYS
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
        described = f"{len(files)} photos of {source}, centre-cropped to {WIDTH}x{HEIGHT}"
    else:
        from texpress.samples import sample_photos

        files = [sample_photos()[i % len(sample_photos())] for i in range(count)]
        described = f"the {len(sample_photos())} sample photos resized to cover {WIDTH}x{HEIGHT}, repeated to {count}"
    out = []
    for i, f in enumerate(files):
        with Image.open(f) as im:
            path = folder / f"{i:02d}-{f.stem}.png"
            _cover_crop(im).save(path)
            out.append(path)
    return out, described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint to evaluate (default: an untrained preset)")
    parser.add_argument("--preset", default="lite", help="preset of the untrained model when --model is not given")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--source", type=Path, help="folder of photos (default: ../shared/data/train/sun-hays80)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "eval_speed.json")
    args = parser.parse_args()

    import torch

    from texpress.codec.checkpoint import build_model, save_checkpoint
    from texpress.codec.config import get_preset
    from texpress.evaluate.config import EvalConfig, ModelSpec
    from texpress.evaluate.run import run_eval
    
    with tempfile.TemporaryDirectory(prefix="eval-speed-") as tmp:
        tmp = Path(tmp)
        images, described = make_images(tmp, args.images, args.source)
        model = args.model
        if model is None:
            model = tmp / f"{args.preset}-untrained.ckpt"
            save_checkpoint(build_model(get_preset(args.preset), seed=0), model)
        cfg = EvalConfig()
        start = time.perf_counter()
        outcome = run_eval([str(p) for p in images], [ModelSpec.parse(str(model))], cfg, tmp / "report")
        total = time.perf_counter() - start
        rows = list(csv.DictReader((tmp / "report" / "per_image.csv").open()))

    coding: dict[str, float] = defaultdict(float)
    for r in rows:
        coding[r["curve"]] += float(r["encode_s"]) + float(r["decode_s"])
    codecs_s = sum(coding.values())
    points = len({(r["curve"], r["point"]) for r in rows})
    result = {
        "benchmark": "eval_speed",
        "machine": f"{platform.node()} ({os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads)",
        "images": described, "width": WIDTH, "height": HEIGHT, "image_count": len(images),
        "model": str(args.model) if args.model else f"untrained {args.preset}",
        "baselines": list(cfg.baselines), "points": points, "codings": len(rows),
        "failures": outcome.failures,
        "total_s": round(total, 2), "target_s": TARGET_S, "meets_target": total < TARGET_S,
        "coding_s": {k: round(v, 2) for k, v in coding.items()},
        "metrics_and_reports_s": round(total - codecs_s, 2),
        "share": {**{k: round(v / total, 4) for k, v in coding.items()},
                  "metrics_and_reports": round((total - codecs_s) / total, 4)},
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(f"eval speed: {points} points x {len(images)} images of {WIDTH}x{HEIGHT} ({described})")
    print(f"{'part':<22}{'seconds':>10}{'share':>9}")
    for k, v in sorted(coding.items(), key=lambda kv: -kv[1]):
        print(f"{k:<22}{v:>10.1f}{v / total:>9.1%}")
    print(f"{'metrics + reports':<22}{total - codecs_s:>10.1f}{(total - codecs_s) / total:>9.1%}")
    print(f"{'total':<22}{total:>10.1f}   target < {TARGET_S:.0f} s: {'met' if total < TARGET_S else 'MISSED'}"
          f"   (load average {result['load_average_1min']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
