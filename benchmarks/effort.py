"""Encode effort levels (codec.refine) on a photo folder: BD-rate of each effort against effort 0 on
the shipped default curve, encode seconds per megapixel beside the slowest settings of WebP (method 6),
AVIF (speed 0) and JPEG XL (effort 9) in the same run, and decode time (which must not change).

    .venv/bin/python benchmarks/effort.py [--images DIR] [--max-images N] [--models lite-q0,lite-q1,...]
        [--qualities 0,25,50,75,100] [--efforts 0,1,2,3] [--json PATH] [--figure PNG]

Default images: the bundled sample photos; default models: every shipped model on the default
model's curve (lite-vr: one variable-rate model, whose curve is its sweep of --qualities). Prints a table and writes benchmarks/results/effort.json (docs/effort.md).
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
from texpress.codec.threads import CODING_THREADS, coding_threads  # noqa: E402
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


class Point:
    """One point of the curve: a shipped model, at a quality when it is variable-rate."""

    def __init__(self, model, quality: float | None):
        self.model, self.quality, self.path = model, quality, model.path
        self.name = model.name if quality is None else f"{model.name}@q{quality:g}"


def curve_points(models: list, qualities: list[float]) -> list[Point]:
    out = []
    for m in models:
        variable = bool(m.info.get("rate_lambdas"))
        out += [Point(m, q) for q in qualities] if variable else [Point(m, None)]
    return out


def run(images: list[np.ndarray], models: list, efforts: list[int]) -> dict:
    rows = []
    codecs: dict = {}
    for m in models:
        codec = codecs.get(m.path) or codecs.setdefault(m.path, Codec.from_checkpoint(m.path))
        for effort in efforts:
            for i, rgb in enumerate(images):
                image = codec.load(rgb)
                t0 = time.perf_counter()
                data = codec.encode(image, effort=effort, quality=m.quality)
                t1 = time.perf_counter()
                with coding_threads():  # decode under the same thread count as every encode
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


def levels(models: list) -> tuple:
    """The effort levels of the benchmarked curve (codec.refine.levels_for its first model)."""
    from texpress.codec.checkpoint import load_model

    return refine.levels_for(load_model(models[0].path))


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
        entry = {"effort": effort, "iterations": levels(models)[effort].iterations,
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
    ax.set_xscale("log")
    ax.set_xlabel("encode seconds per megapixel (2-core CPU, one thread)")
    ax.set_ylabel("bits saved at equal quality vs effort 0 (%)")
    ax.set_title(f"Encode effort on the {summary['curve']} curve ({summary['images']} val photos)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


MEMORY_CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
from PIL import Image
from texpress.codec import refine
from texpress.codec.api import Codec
from texpress.codec.shipped import by_name
from texpress.codec.threads import coding_threads
from texpress.samples import sample_photos
name, width, height, level, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
codec = Codec.from_checkpoint(by_name(name).path)
photo = np.asarray(Image.open(next(p for p in sample_photos() if p.name == "motorcycle_left.png")).convert("RGB"))
reps = (-(-height // photo.shape[0]), -(-width // photo.shape[1]), 1)
image = codec.load(np.ascontiguousarray(np.tile(photo, reps)[:height, :width]))
effort = refine.EFFORTS[level]
effort = refine.Effort(level, steps, effort.lr, effort.surrogate, effort.schedule) if level else None
t0 = time.perf_counter()
quality = codec.check_quality(None)
with coding_threads():
    data = codec._encode(image, None, quality, effort, codec.objective(quality=quality) if level else None)
print(json.dumps({"seconds": time.perf_counter() - t0, "bytes": len(data),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def memory(model: str, sizes: list[tuple[int, int]], steps: int) -> list[dict]:
    """Peak RSS of one encode in a child process at effort 0 and at the top effort cut to `steps` Adam
    steps per piece (every level keeps the same activations per step: the piece size bounds them)."""
    import subprocess
    import sys

    out = []
    for width, height in sizes:
        for level in (0, refine.TOP_EFFORT):
            proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, model, str(width), str(height), str(level),
                                   str(steps)], capture_output=True, text=True, check=True)
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            out.append({"width": width, "height": height, "megapixels": round(width * height / 1e6, 2),
                        "effort": level, "steps_per_piece": steps if level else 0, **rec})
            print(f"  memory {width}x{height} effort {level}: {rec['peak_rss_mb']:.0f} MB "
                  f"({rec['seconds']:.1f} s)", flush=True)
    return out


def compare(model: str, images: list[np.ndarray], configs: dict[str, dict]) -> dict:
    """Surrogates and schedules side by side on one model: mean bpp, PSNR and the real R-D loss
    (lambda * bpp from the bytes + k_m * MSE of the decoded image) and encode seconds per image."""
    from texpress.codec.shipped import by_name

    codec = Codec.from_checkpoint(by_name(model).path)
    quality = codec.check_quality(None)
    objective = codec.objective(quality=quality)
    out = {}
    for name, cfg in configs.items():
        rows, t0 = [], time.perf_counter()
        for rgb in images:
            effort = refine.Effort(9, **cfg) if cfg.get("iterations") else None
            with coding_threads():
                data = codec._encode(codec.load(rgb), None, quality, effort, objective)
            rec = np.asarray(codec.decompress(data).convert("RGB"))
            bpp = metrics.bpp(len(data), rgb.shape[1], rgb.shape[0])
            mse = float(np.mean((rec.astype(np.float64) - rgb) ** 2))
            rows.append((bpp, metrics.psnr(rgb, rec), objective.lam * bpp + objective.k_m * mse))
        b, q, loss = (float(v) for v in np.mean(rows, axis=0))
        out[name] = {**cfg, "bpp": round(b, 4), "psnr": round(q, 3), "loss": round(loss, 4),
                     "s_per_image": round((time.perf_counter() - t0) / len(images), 2)}
        print(f"  {name:24s} {b:.4f} bpp {q:.3f} dB loss {loss:.4f} {out[name]['s_per_image']:.1f} s/image", flush=True)
    return out


COMPARE = {
    "effort 0": {},
    "mixed 30, lr 5e-3 const": {"iterations": 30, "lr": 5e-3, "schedule": "constant"},
    "mixed 30, lr 2e-2 cos": {"iterations": 30, "lr": 2e-2},
    "mixed 30, lr 8e-2 cos": {"iterations": 30, "lr": 8e-2},
    "mixed 30, lr 0.16 cos": {"iterations": 30, "lr": 0.16},
    "sga 30, lr 2e-2 cos": {"iterations": 30, "lr": 2e-2, "surrogate": "sga"},
    "mixed 60, lr 4e-2 const": {"iterations": 60, "lr": 4e-2, "schedule": "constant"},
    "mixed 60, lr 8e-2 cos": {"iterations": 60, "lr": 8e-2},
    "sga 60, lr 8e-2 cos": {"iterations": 60, "lr": 8e-2, "surrogate": "sga"},
}


def texture(model: str, images: list[np.ndarray], level: int) -> dict:
    """What refinement does to an adversarial model's texture: effort 0, `level` with the R-D
    objective, and `level` against the rate alone (texpress.evaluate.texture scores)."""
    from texpress.codec.shipped import by_name
    from texpress.evaluate.texture import TextureReference

    codec = Codec.from_checkpoint(by_name(model).path)
    quality = codec.check_quality(None)
    rd = codec.objective(quality=quality)
    runs = {"effort 0": None, f"effort {level}, R-D": rd,
            f"effort {level}, rate only": refine.Objective(rd.lam, rd.k_m, rate_only=True)}
    out = {}
    for name, objective in runs.items():
        rows = []
        for rgb in images:
            with coding_threads():
                data = codec._encode(codec.load(rgb), None, quality, refine.EFFORTS[level] if objective else None,
                                     objective)
            rec = np.asarray(codec.decompress(data).convert("RGB"))
            tex = TextureReference.of(rgb).scores(rec)
            rows.append((metrics.bpp(len(data), rgb.shape[1], rgb.shape[0]), metrics.psnr(rgb, rec),
                         tex["texture-distance"], tex["hf-ratio"], tex["checkerboard"]))
        out[name] = dict(zip(("bpp", "psnr", "texture_distance", "hf_ratio", "checkerboard"),
                             (round(float(v), 4) for v in np.mean(rows, axis=0))))
        print(f"  {name:24s} {out[name]}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", help="a photo folder (default: the bundled sample photos)")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--every", type=int, default=1, help="take every Nth image of the folder (sorted)")
    p.add_argument("--models", help="shipped model names, comma-separated (default: the default curve)")
    p.add_argument("--efforts", default=",".join(str(e.level) for e in refine.EFFORTS))
    p.add_argument("--qualities", default="0,25,50,75,100", help="the qualities a variable-rate model is swept "
                   "over (its curve)")
    p.add_argument("--no-classical", action="store_true", help="skip the classical encoders' speed runs")
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--figure", type=Path, default=None)
    p.add_argument("--memory", default=None, help="instead: peak RSS of encodes of these sizes, e.g. "
                   "2048x2048,4096x4096 (a tiled sample photo), at effort 0 and at the top effort")
    p.add_argument("--memory-steps", type=int, default=2, help="Adam steps per piece in --memory runs")
    p.add_argument("--replot", nargs="+", type=Path, default=None, help="instead: the table, JSON and figure from "
                   "the rows of earlier runs' JSON files (for each model, effort and image the first file wins)")
    p.add_argument("--compare", action="store_true", help="instead: surrogates and schedules side by side on the "
                   "first model (COMPARE)")
    p.add_argument("--texture", default=None, help="instead: texture scores of this (adversarial) model at "
                   "effort 0 and at the first effort above 0, R-D and rate-only")
    args = p.parse_args()
    if args.compare or args.texture:
        sources = [args.images] if args.images else [str(x) for x in sample_photos()]
        items = list_images(sources)[0][:: args.every][: args.max_images]
        images = [np.ascontiguousarray(item.read()) for item in items]
        if args.compare:
            result = {"model": curve_models(args.models)[0].name, "images": [i.name for i in items],
                      "runs": compare(curve_models(args.models)[0].name, images, COMPARE)}
            path = RESULTS.with_name("effort_compare.json")
        else:
            level = [e for e in (refine.check_effort(v) for v in args.efforts.split(",")) if e][0]
            result = {"model": args.texture, "images": [i.name for i in items], "effort": level,
                      "runs": texture(args.texture, images, level)}
            path = RESULTS.with_name("effort_texture.json")
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
        return
    if args.replot:
        runs = [json.loads(f.read_text()) for f in args.replot]
        rows: dict = {}
        for run_ in runs:
            for r in run_["rows"]:
                rows.setdefault((r["model"], r["effort"], r["image"]), r)
        shipped = shipped_models()
        models = [Point(shipped[n.split("@q")[0]], float(n.split("@q")[1]) if "@q" in n else None)
                  for n in runs[0]["models"]]
        efforts = sorted({r["effort"] for r in rows.values()})
        summary = {**{k: runs[0][k] for k in ("images", "image_names", "curve", "models")},
                   **summarise(list(rows.values()), models, efforts), "classical": runs[0]["classical"],
                   "levels": [vars(e) for e in refine.EFFORTS], "refine_threads": CODING_THREADS,
                   "from": [str(f) for f in args.replot], "rows": list(rows.values())}
        print_table(summary, models, summary["classical"])
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        if args.figure:
            figure(summary, summary["classical"], args.figure)
        print(f"wrote {args.json}" + (f" and {args.figure}" if args.figure else ""))
        return
    if args.memory:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.memory.split(",")]
        model = (args.models or default_model().name).split(",")[0]
        result = {"model": model, "refine_tile": refine.REFINE_TILE, "runs": memory(model, sizes, args.memory_steps)}
        path = args.json if args.json != RESULTS else RESULTS.with_name("effort_memory.json")
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
        return

    sources = [args.images] if args.images else [str(x) for x in sample_photos()]
    items, _ = list_images(sources)
    items = items[:: args.every][: args.max_images]
    images = [np.ascontiguousarray(item.read()) for item in items]
    efforts = [refine.check_effort(e) for e in args.efforts.split(",")]
    if 0 not in efforts:
        efforts = [0, *efforts]
    models = curve_points(curve_models(args.models), [float(q) for q in args.qualities.split(",")])
    print(f"{len(images)} images, {sum(im.shape[0] * im.shape[1] for im in images) / 1e6:.2f} Mpx; "
          f"models {', '.join(m.name for m in models)}; efforts {efforts}", flush=True)
    classical = {} if args.no_classical else classical_speed(images)
    rows = run(images, models, efforts)
    summary = {"images": len(images), "image_names": [item.name for item in items],
               "curve": models[0].model.curve, "models": [m.name for m in models], **summarise(rows, models, efforts),
               "classical": classical, "levels": [vars(e) for e in levels(models)],
               "refine_threads": CODING_THREADS, "torch": torch.__version__,
               "cpu": platform.processor() or platform.machine(), "rows": rows}
    print_table(summary, models, classical)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.figure:
        figure(summary, classical, args.figure)
    print(f"wrote {args.json}" + (f" and {args.figure}" if args.figure else ""))


if __name__ == "__main__":
    main()
