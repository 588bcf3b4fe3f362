"""Encode effort levels (codec.refine) on a photo folder: BD-rate of each effort against effort 0 on
the shipped default curve, encode seconds per megapixel beside the slowest settings of WebP (method 6),
AVIF (speed 0) and JPEG XL (effort 9) in the same run, and decode time (which must not change).

    .venv/bin/python benchmarks/effort.py [--images DIR] [--max-images N] [--models lite-q0,lite-q1,...]
        [--efforts 0,1,2,3] [--json PATH] [--figure PNG]

Default images: the bundled sample photos; default models: every shipped model on the default
model's curve. Prints a table and writes benchmarks/results/effort.json (docs/effort.md).
Targets (val photos): >= 8 % BD-rate saving (PSNR) at <= 20 s/Mpx, >= 15 % at the top effort.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", category=FutureWarning)

from texpress.codec import refine  # noqa: E402
from texpress.codec.api import Codec  # noqa: E402
from texpress.codec.shipped import default_model, shipped_models  # noqa: E402
from texpress.evaluate import metrics  # noqa: E402
from texpress.evaluate.bdrate import bd_rate, quality_axis  # noqa: E402
from texpress.evaluate.sources import list_images  # noqa: E402
from texpress.samples import sample_photos  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "effort.json"


def slow_classical() -> dict:
    """The slowest settings of three classical encoders, each at a quality near the models' rates."""
    import imagecodecs
    from PIL import Image
    import io

    def pil(fmt: str, **kw):
        def encode(rgb: np.ndarray) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format=fmt, **kw)
            return buf.getvalue()
        return encode

    return {
        "webp -m 6 (q 50)": pil("WEBP", quality=50, method=6),
        "avif speed 0 (q 50)": pil("AVIF", quality=50, speed=0, subsampling="4:4:4", max_threads=1),
        "jxl effort 9 (d 2)": lambda rgb: bytes(imagecodecs.jpegxl_encode(rgb, distance=2.0, effort=9, numthreads=1)),
    }


def curve_models(names: str | None) -> list:
    shipped = shipped_models()
    if names:
        return [shipped[n] for n in names.split(",")]
    curve = default_model().curve
    return sorted((m for m in shipped.values() if m.curve == curve), key=lambda m: -m.info.get("lambda", 0))


def run(images: list[np.ndarray], models: list, efforts: list[int]) -> dict:
    rows = []
    for m in models:
        codec = Codec.from_checkpoint(m.path)
        for effort in efforts:
            for i, rgb in enumerate(images):
                image = codec.load(rgb)
                t0 = time.perf_counter()
                data = codec.encode(image, effort=effort)
                t1 = time.perf_counter()
                with refine.fixed_threads():  # decode under the same thread count as every encode
                    rec = np.asarray(codec.decompress(data).convert("RGB"))
                t2 = time.perf_counter()
                rows.append({"model": m.name, "effort": effort, "image": i, "bytes": len(data),
                             "pixels": rgb.shape[0] * rgb.shape[1], "encode_s": t1 - t0, "decode_s": t2 - t1,
                             "bpp": metrics.bpp(len(data), rgb.shape[1], rgb.shape[0]),
                             "psnr": metrics.psnr(rgb, rec), "ms_ssim": metrics.ms_ssim(rgb, rec)})
            last = [r for r in rows if r["model"] == m.name and r["effort"] == effort]
            print(f"  {m.name} effort {effort}: {np.mean([r['bpp'] for r in last]):.4f} bpp, "
                  f"{np.mean([r['psnr'] for r in last]):.2f} dB, "
                  f"{sum(r['encode_s'] for r in last) / sum(r['pixels'] for r in last) * 1e6:.1f} s/Mpx", flush=True)
    return rows


def summarise(rows: list[dict], models: list, efforts: list[int]) -> dict:
    def points(effort: int) -> dict:
        out = {"bpp": [], "psnr": [], "ms_ssim": []}
        for m in models:
            sel = [r for r in rows if r["model"] == m.name and r["effort"] == effort]
            for k in out:
                out[k].append(float(np.mean([r[k] for r in sel])))
        return out

    anchor = points(0)
    table = []
    for effort in efforts:
        p = points(effort)
        sel = [r for r in rows if r["effort"] == effort]
        mpx = sum(r["pixels"] for r in sel) / 1e6
        entry = {"effort": effort, "iterations": refine.EFFORTS[effort].iterations,
                 "encode_s_per_mpx": round(sum(r["encode_s"] for r in sel) / mpx, 2),
                 "decode_s_per_mpx": round(sum(r["decode_s"] for r in sel) / mpx, 3),
                 "points": {k: [round(v, 5) for v in vals] for k, vals in p.items()},
                 "bpp_change_pct": [round(100 * (b / a - 1), 2) for a, b in zip(anchor["bpp"], p["bpp"])],
                 "psnr_change_db": [round(b - a, 3) for a, b in zip(anchor["psnr"], p["psnr"])]}
        if effort and len(models) >= 2:
            entry["bd_rate_psnr_pct"] = round(bd_rate(anchor["bpp"], anchor["psnr"], p["bpp"], p["psnr"]), 2)
            entry["bd_rate_ms_ssim_pct"] = round(bd_rate(anchor["bpp"], quality_axis(anchor["ms_ssim"], "ms-ssim-rgb"),
                                                         p["bpp"], quality_axis(p["ms_ssim"], "ms-ssim-rgb")), 2)
        table.append(entry)
    return {"efforts": table}


def classical_speed(images: list[np.ndarray]) -> dict:
    out = {}
    mpx = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    for name, encode in slow_classical().items():
        t0 = time.perf_counter()
        size = sum(len(encode(im)) for im in images)
        out[name] = {"encode_s_per_mpx": round((time.perf_counter() - t0) / mpx, 2),
                     "bpp": round(8 * size / (mpx * 1e6), 4)}
    return out


def print_table(summary: dict, models: list, classical: dict) -> None:
    names = ", ".join(m.name for m in models)
    print(f"\nEffort levels on {summary['images']} images, models {names}")
    print(f"{'effort':>6} {'iters':>5} {'BD-rate PSNR':>12} {'BD-rate MS-SSIM':>15} {'encode s/Mpx':>12} "
          f"{'decode s/Mpx':>12}  bpp change per model")
    for e in summary["efforts"]:
        bd = f"{e['bd_rate_psnr_pct']:+.1f} %" if "bd_rate_psnr_pct" in e else "-"
        bm = f"{e['bd_rate_ms_ssim_pct']:+.1f} %" if "bd_rate_ms_ssim_pct" in e else "-"
        per = " ".join(f"{c:+.1f}%/{d:+.2f}dB" for c, d in zip(e["bpp_change_pct"], e["psnr_change_db"]))
        print(f"{e['effort']:>6} {e['iterations']:>5} {bd:>12} {bm:>15} {e['encode_s_per_mpx']:>12.2f} "
              f"{e['decode_s_per_mpx']:>12.3f}  {per}")
    for name, c in classical.items():
        print(f"{name:>30}: {c['encode_s_per_mpx']:.2f} s/Mpx ({c['bpp']:.3f} bpp)")


def figure(summary: dict, classical: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    es = [e for e in summary["efforts"]]
    xs = [e["encode_s_per_mpx"] for e in es]
    for key, label, style in (("bd_rate_psnr_pct", "PSNR", "o-"), ("bd_rate_ms_ssim_pct", "MS-SSIM", "s--")):
        ys = [-e.get(key, 0.0) for e in es]
        ax.plot(xs, ys, style, label=f"BD-rate saving ({label})")
    for e, x in zip(es, xs):
        ax.annotate(f"effort {e['effort']}", (x, -e.get("bd_rate_psnr_pct", 0.0)), textcoords="offset points",
                    xytext=(4, -12), fontsize=8)
    for name, c in classical.items():
        ax.axvline(c["encode_s_per_mpx"], color="grey", lw=0.8, ls=":")
        ax.annotate(name, (c["encode_s_per_mpx"], 1), rotation=90, fontsize=7, color="grey", va="bottom")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("encode seconds per megapixel (2-core CPU, one thread)")
    ax.set_ylabel("bits saved at equal quality vs effort 0 (%)")
    ax.set_title(f"Encode effort on the {summary['curve']} curve ({summary['images']} val photos)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", help="a photo folder (default: the bundled sample photos)")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--every", type=int, default=1, help="take every Nth image of the folder (sorted)")
    p.add_argument("--models", help="shipped model names, comma-separated (default: the default curve)")
    p.add_argument("--efforts", default=",".join(str(e.level) for e in refine.EFFORTS))
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--figure", type=Path, default=None)
    args = p.parse_args()

    sources = [args.images] if args.images else [str(x) for x in sample_photos()]
    items, _ = list_images(sources)
    items = items[:: args.every][: args.max_images]
    images = [np.ascontiguousarray(item.read()) for item in items]
    efforts = [refine.check_effort(e) for e in args.efforts.split(",")]
    if 0 not in efforts:
        efforts = [0, *efforts]
    models = curve_models(args.models)
    print(f"{len(images)} images, {sum(im.shape[0] * im.shape[1] for im in images) / 1e6:.2f} Mpx; "
          f"models {', '.join(m.name for m in models)}; efforts {efforts}", flush=True)
    classical = classical_speed(images)
    rows = run(images, models, efforts)
    summary = {"images": len(images), "image_names": [item.name for item in items],
               "curve": models[0].curve, "models": [m.name for m in models], **summarise(rows, models, efforts),
               "classical": classical, "levels": [vars(e) for e in refine.EFFORTS],
               "refine_threads": refine.REFINE_THREADS, "torch": torch.__version__,
               "cpu": platform.processor() or platform.machine(), "rows": rows}
    print_table(summary, models, classical)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.figure:
        figure(summary, classical, args.figure)
    print(f"wrote {args.json}" + (f" and {args.figure}" if args.figure else ""))


if __name__ == "__main__":
    main()
