"""Figures: R-D plots (all curves on one figure), texture scores against rate, and the side-by-side
crops figure (original, the model, each baseline at the nearest rate).

Matplotlib is used through its object API with the Agg canvas: no pyplot, no global backend switch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter

from texpress.evaluate.metrics import ms_ssim_db
from texpress.evaluate.texture import NEUTRAL
from texpress.files import write_atomic

MODEL_STYLE = {"linewidth": 2.4, "marker": "o", "markersize": 6, "zorder": 3}
BASELINE_STYLE = {"linewidth": 1.3, "marker": ".", "markersize": 7, "linestyle": "--", "zorder": 2}


@dataclass(frozen=True)
class CropBox:
    top: int
    left: int
    size_y: int
    size_x: int

    def cut(self, rgb: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(rgb[self.top: self.top + self.size_y, self.left: self.left + self.size_x])


def choose_crop(rgb: np.ndarray, size: int) -> CropBox:
    """The size x size window with the most gradient energy (the most textured region)."""
    h, w = rgb.shape[:2]
    sy, sx = min(size, h), min(size, w)
    y = rgb.astype(np.float64).mean(axis=2)
    gy, gx = np.gradient(y)
    energy = uniform_filter(gx * gx + gy * gy, size=(sy, sx), mode="constant")
    # window centres that keep the whole window inside the image
    cy0, cx0 = sy // 2, sx // 2
    valid = energy[cy0: h - (sy - cy0) + 1, cx0: w - (sx - cx0) + 1]
    iy, ix = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return CropBox(int(iy), int(ix), sy, sx)


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> None:
    """Write to a temporary name in the same folder, then rename."""
    write_atomic(path, writer=lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip("."), bbox_inches="tight"))


def _finite(xs, ys):
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_rd(curves: dict, path: Path, metric: str, n_images: int) -> None:
    """bpp against PSNR or MS-SSIM (in dB) for every curve on one axes."""
    fig = _new_figure(7.5, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    for curve in curves.values():
        xs = curve.values("bpp")
        ys = curve.values(metric)
        if metric == "ms-ssim-rgb":
            ys = [ms_ssim_db(v) if v is not None and math.isfinite(v) else float("nan") for v in ys]
        xs, ys = _finite(xs, ys)
        style = MODEL_STYLE if curve.kind == "model" else BASELINE_STYLE
        label = curve.label if curve.kind == "baseline" else f"{curve.label} (model)"
        ax.plot(xs, ys, label=label, **style)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR RGB (dB)" if metric == "psnr-rgb" else "MS-SSIM RGB (dB)  = -10 log10(1 - MS-SSIM)")
    ax.set_title(f"Rate-distortion, mean over {n_images} image{'s' if n_images != 1 else ''}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def plot_texture(curves: dict, path: Path, n_images: int) -> None:
    """The three texture scores against bpp, one panel each, with each score's neutral value marked."""
    titles = {"checkerboard": "checkerboard score (0 = none)",
              "texture-distance": "texture-statistics distance (0 = same)",
              "hf-ratio": "high-frequency energy ratio (1 = same)"}
    fig = _new_figure(15, 4.4)
    for i, metric in enumerate(titles):
        ax = fig.add_subplot(1, 3, i + 1)
        for curve in curves.values():
            xs, ys = _finite(curve.values("bpp"), curve.values(metric))
            style = MODEL_STYLE if curve.kind == "model" else BASELINE_STYLE
            ax.plot(xs, ys, label=curve.label, **style)
        ax.axhline(NEUTRAL[metric], color="black", linewidth=0.8, alpha=0.6)
        if metric == "hf-ratio":
            ax.set_yscale("log")
        ax.set_title(titles[metric], fontsize=10)
        ax.set_xlabel("bits per pixel")
        ax.grid(True, alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.suptitle(f"Texture fidelity, mean over {n_images} image{'s' if n_images != 1 else ''}")
    save_figure(fig, path)


def nearest_points(records, image: str, curves: dict, target_bpp: float) -> dict[str, object]:
    """For each curve, the record of `image` whose bpp is nearest target_bpp."""
    best: dict[str, object] = {}
    for r in records:
        if r.image != image or r.curve not in curves:
            continue
        cur = best.get(r.curve)
        if cur is None or abs(r.bpp - target_bpp) < abs(cur.bpp - target_bpp):
            best[r.curve] = r
    return best


def plot_crops(crops: dict, chosen: dict, curves: dict, path: Path, image: str, target_bpp: float) -> None:
    """Original, then each model curve, then each baseline, at the point nearest target_bpp."""
    panels = [("original", crops[("original", "")])]
    order = [c for c in curves.values() if c.kind == "model"] + [c for c in curves.values() if c.kind != "model"]
    for curve in order:
        r = chosen.get(curve.name)
        if r is None or (curve.name, r.point) not in crops:
            continue
        title = f"{curve.label}\n{r.bpp:.3f} bpp, {r.psnr_rgb:.2f} dB"
        panels.append((title, crops[(curve.name, r.point)]))
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = _new_figure(3.2 * cols, 3.5 * rows)
    for i, (title, img) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{image}: nearest to {target_bpp:.3f} bpp", fontsize=10)
    save_figure(fig, path)
