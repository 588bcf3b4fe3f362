"""`texpress slim report`: what a slim variant costs and what it gives up, one row per model.

For each checkpoint: parameters and kMAC/px of the encoder and decoder sides (codec.complexity),
whole-decode ms per megapixel and peak decode memory (slim.cost, measured side by side in one run,
with Pillow's WebP decode of the same photo), bpp / PSNR / MS-SSIM / texture scores on an image set
(at several qualities for a variable-rate model, through the real bitstream) and the BD-rate against
the first checkpoint, the teacher (PSNR; for a single-rate model the rate difference of its one point
at equal PSNR). Written as a table, JSON and a Pareto figure (BD-rate against decode ms/Mpx).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from texpress.codec import complexity
from texpress.codec.api import Codec
from texpress.codec.checkpoint import read_checkpoint
from texpress.errors import InputError
from texpress.evaluate.bdrate import BDRateError, bd_rate, rate_delta_at
from texpress.evaluate.metrics import ms_ssim, psnr, single_thread
from texpress.evaluate.texture import TextureReference
from texpress.files import write_atomic
from texpress.slim.cost import side_by_side

QUALITIES = (0.0, 25.0, 50.0, 75.0, 100.0)  # a variable-rate model's curve
MID_QUALITY = 50.0  # where the single-number columns (bpp, PSNR, texture) are read
TIMING_SIZE = (768, 512)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class Row:
    name: str
    fingerprint: str
    config: dict
    encoder_params: int
    decoder_params: int
    encoder_kmac_per_px: float
    decoder_kmac_per_px: float
    generator_kmac_per_px: float
    decode_ms: float
    decode_ms_per_mpx: float
    peak_decode_mb: float
    speedup: float = 1.0  # teacher's decode ms / this one's
    decoder_kmac_share: float = 1.0  # this decoder's kMAC/px / the teacher's
    curve: dict = field(default_factory=dict)  # quality -> {bpp, psnr, ms_ssim, checkerboard, texture_distance}
    bpp: float = math.nan
    psnr: float = math.nan
    ms_ssim: float = math.nan
    checkerboard: float = math.nan
    texture_distance: float = math.nan
    bd_rate: float = math.nan
    decode_compatible: bool | None = None
    slim: dict = field(default_factory=dict)


def image_files(folder: str | os.PathLike, limit: int | None) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such image folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images")
    return files[:limit] if limit else files


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def timing_photo(rgb: np.ndarray) -> np.ndarray:
    """The photo decode times are measured on: `rgb` resized to 768x512 (the issue's size)."""
    return np.array(Image.fromarray(rgb).resize(TIMING_SIZE, Image.LANCZOS))


def measure_curve(codec: Codec, images: list[np.ndarray], on_item: Callable[[], None] | None = None) -> dict:
    """quality (or "single") -> mean bpp, PSNR, MS-SSIM and texture scores over `images`, through the bitstream."""
    qualities = QUALITIES if codec.config.variable_rate else (None,)
    refs = [TextureReference.of(rgb) for rgb in images]
    curve = {}
    for q in qualities:
        sums = {"bpp": 0.0, "psnr": 0.0, "ms_ssim": 0.0, "checkerboard": 0.0, "texture_distance": 0.0}
        for rgb, ref in zip(images, refs):
            data = codec.compress(rgb, quality=q)
            rec = np.array(codec.decompress(data).convert("RGB"))
            h, w = rgb.shape[:2]
            scores = ref.scores(rec)
            with single_thread():
                sums["ms_ssim"] += ms_ssim(rgb, rec)
            sums["bpp"] += 8.0 * len(data) / (h * w)
            sums["psnr"] += psnr(rgb, rec)
            sums["checkerboard"] += scores["checkerboard"]
            sums["texture_distance"] += scores["texture-distance"]
            if on_item is not None:
                on_item()
        curve["single" if q is None else f"{q:g}"] = {k: v / len(images) for k, v in sums.items()}
    return curve


def _points(curve: dict) -> tuple[list[float], list[float]]:
    pts = sorted(curve.values(), key=lambda p: p["bpp"])
    return [p["bpp"] for p in pts], [p["psnr"] for p in pts]


def bd_rate_against(teacher: dict, curve: dict) -> float:
    """BD-rate (PSNR) of `curve` against the teacher's; one point: its rate difference at equal PSNR."""
    rt, qt = _points(teacher)
    rs, qs = _points(curve)
    try:
        if len(rs) >= 2 and len(rt) >= 2:
            return bd_rate(rt, qt, rs, qs)
        if len(rt) >= 2:
            return rate_delta_at(rt, qt, rs[0], qs[0])
    except BDRateError:
        pass
    return math.nan


def cost_rows(names: list[str], paths: list[str | os.PathLike], timing_rgb: np.ndarray, rounds: int) -> tuple[list[Row], float]:
    """The cost columns of every model (decode timed side by side) and Pillow's WebP decode ms."""
    codecs = {name: Codec.from_checkpoint(path) for name, path in zip(names, paths)}
    costs, webp_ms = side_by_side(codecs, timing_rgb, rounds=rounds)
    rows = []
    for (name, codec), path in zip(codecs.items(), paths):
        c = complexity.measure(codec.model)
        slim = read_checkpoint(codec.source)["meta"].get("slim", {}) if Path(str(path)).is_file() else {}
        rows.append(Row(
            name=name, fingerprint=codec.fingerprint, config=codec.config.to_dict(),
            encoder_params=c.encoder_params, decoder_params=c.decoder_params,
            encoder_kmac_per_px=c.encoder_kmac_per_px, decoder_kmac_per_px=c.decoder_kmac_per_px,
            generator_kmac_per_px=c.generator_kmac_per_px, decode_ms=costs[name].ms,
            decode_ms_per_mpx=costs[name].ms_per_mpx, peak_decode_mb=costs[name].peak_mb,
            decode_compatible=slim.get("decode_compatible"), slim=slim,
        ))
    teacher = rows[0]
    for r in rows:
        r.speedup = teacher.decode_ms / r.decode_ms
        r.decoder_kmac_share = r.decoder_kmac_per_px / teacher.decoder_kmac_per_px
    return rows, webp_ms


def fill_quality(rows: list[Row], paths: list, images: list[np.ndarray], on_item=None) -> None:
    for row, path in zip(rows, paths):
        row.curve = measure_curve(Codec.from_checkpoint(path), images, on_item)
        mid = row.curve.get(f"{MID_QUALITY:g}") or row.curve.get("single")
        for key in ("bpp", "psnr", "ms_ssim", "checkerboard", "texture_distance"):
            setattr(row, key, mid[key])
    for row in rows:
        row.bd_rate = 0.0 if row is rows[0] else bd_rate_against(rows[0].curve, row.curve)


def to_json(rows: list[Row], webp_ms: float, meta: dict) -> dict:
    return {**meta, "webp_decode_ms": webp_ms, "rows": [asdict(r) for r in rows]}


def write_json(report: dict, path: str | os.PathLike) -> None:
    text = json.dumps(report, indent=2, sort_keys=True, default=lambda v: None) + "\n"
    write_atomic(Path(path), text.replace("NaN", "null").encode())


def plot_pareto(rows: list[Row], path: str | os.PathLike) -> None:
    """BD-rate against the teacher (y) over whole-decode ms/Mpx (x), one labelled point per model."""
    from texpress.evaluate.figures import _new_figure, save_figure

    fig = _new_figure(6.8, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    for r in rows:
        y = r.bd_rate if math.isfinite(r.bd_rate) else 0.0
        ax.scatter([r.decode_ms_per_mpx], [y], s=40)
        ax.annotate(f"{r.name}\n{r.decoder_kmac_per_px:.2f} kMAC/px", (r.decode_ms_per_mpx, y),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("whole decode, ms per megapixel (this CPU, side by side)")
    ax.set_ylabel(f"BD-rate vs {rows[0].name} (PSNR), %")
    ax.set_title("Slim variants: rate cost against decode time")
    ax.grid(True, alpha=0.3)
    save_figure(fig, Path(path))
