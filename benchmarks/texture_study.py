"""The texture study's measurement (docs/texture.md): models and JPEG / WebP / AVIF at equal bpp on
three sets: val photos, scikit-image's brick, grass and gravel textures, and the most textured
128-px crop of each val photo. Each classical codec is coded per image at the quality whose bpp comes
nearest to the reference model's on that image, so every row of a set sits at the reference's rate.

    PYTHONPATH=src python benchmarks/texture_study.py --val ../shared/data/val/bsds500 --max-images 20 \\
        -m lite-q1=models/shipped/lite-q1.ckpt -m gan=runs/gan/model.ckpt --reference lite-q1 \\
        [--crops docs/img/texture] [--json benchmarks/results/texture_study.json]

Prints one table per set (bpp, PSNR, MS-SSIM, checkerboard, texture distance, HF ratio; means over
images) and writes them as JSON; --crops writes side-by-side crops (original, each model, the
codecs) as PNGs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from texpress.codec.api import Codec
from texpress.codec.imageio import IMAGE_SUFFIXES
from texpress.evaluate.baselines import get_baseline
from texpress.evaluate.figures import choose_crop
from texpress.evaluate.metrics import bpp, ms_ssim, psnr
from texpress.evaluate.texture import TextureReference

RESULTS = Path(__file__).parent / "results" / "texture_study.json"
METRICS = ("bpp", "psnr", "ms_ssim", "checkerboard", "texture-distance", "hf-ratio")
CROP = 128


def texture_images() -> dict[str, np.ndarray]:
    """scikit-image's brick, grass and gravel (512 x 512 grey) as RGB."""
    from skimage import data

    return {name: np.repeat(getattr(data, name)()[..., None], 3, axis=2) for name in ("brick", "grass", "gravel")}


def image_sets(val: Path, max_images: int) -> dict[str, dict[str, np.ndarray]]:
    files = sorted(p for p in val.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:max_images]
    photos = {p.name: np.asarray(Image.open(p).convert("RGB")) for p in files}
    crops = {name: choose_crop(rgb, CROP).cut(rgb) for name, rgb in photos.items()}
    return {"val": photos, "textures": texture_images(), "val-crops": crops}


def scores(ref: TextureReference, rec: np.ndarray, nbytes: int) -> dict[str, float]:
    h, w = rec.shape[:2]
    return {"bpp": bpp(nbytes, w, h), "psnr": psnr(ref.rgb, rec), "ms_ssim": ms_ssim(ref.rgb, rec), **ref.scores(rec)}


def code_model(codec: Codec, rgb: np.ndarray) -> tuple[np.ndarray, int]:
    data = codec.compress(Image.fromarray(rgb))
    return np.asarray(codec.decompress(data).convert("RGB")), len(data)


def code_at_rate(name: str, rgb: np.ndarray, target_bpp: float) -> tuple[np.ndarray, int, int]:
    """(reconstruction, bytes, quality) of a classical codec at the integer quality (0..100) whose bpp is
    nearest to target_bpp (bisection: bpp rises with quality)."""
    codec = get_baseline(name)
    h, w = rgb.shape[:2]
    tried: dict[int, bytes] = {}

    def rate(q: int) -> float:
        if q not in tried:
            tried[q] = codec.encode(rgb, q)
        return bpp(len(tried[q]), w, h)

    lo, hi = 0, 100
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if rate(mid) <= target_bpp else (lo, mid)
    q = min((lo, hi), key=lambda q: abs(rate(q) - target_bpp))
    return codec.decode(tried[q]), len(tried[q]), q


def label(tile: np.ndarray, text: str) -> Image.Image:
    im = Image.fromarray(tile).resize((tile.shape[1] * 2, tile.shape[0] * 2), Image.NEAREST)
    canvas = Image.new("RGB", (im.width, im.height + 18), "white")
    canvas.paste(im, (0, 18))
    ImageDraw.Draw(canvas).text((3, 3), text, fill="black")
    return canvas


def save_strip(path: Path, tiles: list[tuple[str, np.ndarray]]) -> None:
    panels = [label(t, text) for text, t in tiles]
    strip = Image.new("RGB", (sum(p.width for p in panels) + 4 * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for p in panels:
        strip.paste(p, (x, 0))
        x += p.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path, optimize=True)


def run(models: dict[str, str], reference: str, val: Path, max_images: int, baselines: list[str],
        crops_dir: Path | None, crop_images: list[str]) -> dict:
    codecs = {name: Codec.from_checkpoint(path) for name, path in models.items()}
    results: dict = {}
    for set_name, images in image_sets(val, max_images).items():
        rows: dict[str, list[dict]] = {name: [] for name in [*models, *baselines]}
        qualities: dict[str, list[int]] = {b: [] for b in baselines}
        for image_name, rgb in images.items():
            ref = TextureReference.of(rgb)
            recs = {}
            for name, codec in codecs.items():
                rec, nbytes = code_model(codec, rgb)
                recs[name] = (rec, nbytes)
                rows[name].append(scores(ref, rec, nbytes))
            target = rows[reference][-1]["bpp"]
            for b in baselines:
                rec, nbytes, q = code_at_rate(b, rgb, target)
                recs[b] = (rec, nbytes)
                qualities[b].append(q)
                rows[b].append(scores(ref, rec, nbytes))
            if crops_dir is not None and (set_name, image_name) in crop_images:
                box = choose_crop(rgb, CROP)
                tiles = [("original", box.cut(rgb))]
                for name, (rec, nbytes) in recs.items():
                    h, w = rgb.shape[:2]
                    tiles.append((f"{name} {bpp(nbytes, w, h):.2f}bpp", box.cut(rec)))
                save_strip(crops_dir / f"{set_name}-{Path(image_name).stem}.png", tiles)
        results[set_name] = {
            "images": len(images),
            "rows": {name: {m: float(np.mean([r[m] for r in rs])) for m in METRICS} for name, rs in rows.items()},
            "baseline_qualities": {b: float(np.median(q)) for b, q in qualities.items()},
        }
    return results


def print_tables(results: dict, reference: str) -> None:
    for set_name, res in results.items():
        ref = res["rows"][reference]
        print(f"\n{set_name} ({res['images']} images; codecs at {reference}'s bpp per image)")
        print(f"{'':22s} {'bpp':>7s} {'PSNR':>7s} {'MS-SSIM':>8s} {'checker':>8s} {'texdist':>8s} {'HF':>6s}"
              f" {'dtex %':>7s}")
        for name, r in res["rows"].items():
            change = 100 * (r["texture-distance"] / ref["texture-distance"] - 1)
            print(f"{name:22s} {r['bpp']:7.4f} {r['psnr']:7.2f} {r['ms_ssim']:8.4f} {r['checkerboard']:8.4f} "
                  f"{r['texture-distance']:8.4f} {r['hf-ratio']:6.3f} {change:+7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--max-images", type=int, default=20)
    ap.add_argument("-m", "--model", action="append", required=True, help="NAME=CHECKPOINT (a path or shipped name)")
    ap.add_argument("--reference", required=True, help="the model whose bpp the codecs match (the MSE model)")
    ap.add_argument("--baselines", default="jpeg,webp,avif")
    ap.add_argument("--crops", type=Path, help="write side-by-side crops here")
    ap.add_argument("--crop-image", action="append", default=[], help="SET/IMAGE to draw (default: textures/gravel)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in args.model)
    crop_images = [tuple(c.split("/", 1)) for c in (args.crop_image or ["textures/gravel"])]
    results = run(models, args.reference, args.val, args.max_images,
                  [b for b in args.baselines.split(",") if b], args.crops, crop_images)
    print_tables(results, args.reference)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"models": models, "reference": args.reference, "sets": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
