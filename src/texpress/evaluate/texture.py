"""Texture-fidelity metrics that need no learned weights (formulas and rationale in docs/metrics.md).

- checkerboard score: energy of the reconstruction error at the frequencies that periodic patterns of
  period 2, 4, 8 or 16 px occupy, over the original's energy at the same frequencies. Neutral 0.
- texture-statistics distance: Gram matrices of a fixed Gaussian-derivative filter bank over local
  patches, compared with a symmetric relative distance in [0, 1]. High when texture is erased and
  when texture is invented. Neutral 0.
- high-frequency energy ratio: reconstruction over original in the top frequency band. Below 1 is
  blur, above 1 invented detail. Neutral 1.

The original's side of each metric depends only on the original, so `TextureReference` computes it
once and every reconstruction of that image (each baseline quality, each model) reuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np
from scipy.ndimage import gaussian_filter

from texpress.evaluate.config import TextureConfig
from texpress.evaluate.curves import TEXTURE as TEXTURE_METRICS  # noqa: F401  (the score names, re-exported)

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601
CB_FLOOR = 1e-4  # squared 8-bit levels: keeps the checkerboard ratio finite on perfectly flat originals
HF_FLOOR = 1e-6


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ LUMA


def lattice_period(periods: tuple[int, ...]) -> int:
    return reduce(math.lcm, periods, 1)


def lattice_spectrum(a: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-tile DFT energy at the lattice frequencies (k/P, l/P) and the mean of its 8 neighbouring bins.

    `a` is HxWxC; it is cut into non-overlapping T x T tiles (T = 4P, top-left grid, remainder
    ignored), each tile's mean removed. Returns (peak, background), each of shape (tiles, P, P) with
    the DC term zeroed, energies summed over channels and divided by T^4, so that a bin's energy is
    the mean squared amplitude (per pixel) of its sinusoid. None if no tile fits."""
    t = 4 * period
    if a.shape[0] < t or a.shape[1] < t:
        t = 2 * period * (min(a.shape[0], a.shape[1]) // (2 * period))
        if t < 2 * period:
            return None
    th, tw = a.shape[0] // t, a.shape[1] // t
    c = a.shape[2]
    tiles = a[: th * t, : tw * t].reshape(th, t, tw, t, c).transpose(0, 2, 4, 1, 3).reshape(th * tw, c, t, t)
    tiles = tiles - tiles.mean(axis=(2, 3), keepdims=True)
    spec = (np.abs(np.fft.fft2(tiles)) ** 2).sum(axis=1) / float(t) ** 4  # (tiles, t, t)
    step = t // period
    idx = np.arange(period) * step
    peak = spec[:, idx[:, None], idx[None, :]]
    background = np.zeros_like(peak)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                background += spec[:, ((idx + dy) % t)[:, None], ((idx + dx) % t)[None, :]]
    background /= 8.0
    peak[:, 0, 0] = 0.0
    background[:, 0, 0] = 0.0
    return peak, background


def lattice_energy(a: np.ndarray, period: int) -> float:
    """Mean (over tiles) energy of `a` at the lattice frequencies: the original's side of the checkerboard score."""
    spec = lattice_spectrum(a, period)
    return float("nan") if spec is None else float(spec[0].sum(axis=(1, 2)).mean())


def periodic_excess(a: np.ndarray, period: int) -> float:
    """Mean (over tiles) lattice energy of `a` above the local spectral background, clipped at 0: the mean
    squared amplitude of what is truly periodic with period P (or a divisor of it)."""
    spec = lattice_spectrum(a, period)
    return float("nan") if spec is None else max(0.0, float((spec[0] - spec[1]).sum(axis=(1, 2)).mean()))


def _filter_bank(y: np.ndarray, scales: tuple[float, ...]) -> np.ndarray:
    """Scale-normalised Gaussian derivatives at each scale s: s*Gx, s*Gy, s^2*Gxx, s^2*Gyy, s^2*Gxy.

    Shape (S, 5, H, W). Derivatives are central differences of the Gaussian-smoothed luma."""
    out = []
    for s in scales:
        g = gaussian_filter(y, s, mode="reflect")
        gy, gx = np.gradient(g)
        gyy, gyx = np.gradient(gy)
        _, gxx = np.gradient(gx)
        out.append([s * gx, s * gy, s * s * gxx, s * s * gyy, s * s * gyx])
    return np.asarray(out)


def patch_grams(y: np.ndarray, cfg: TextureConfig) -> np.ndarray:
    """Per patch and scale, the 5x5 Gram matrix of the filter responses: shape (patches, S, 5, 5).

    Patches are the non-overlapping patch x patch tiles of the top-left grid (one square of the
    short side if the image is smaller than a patch)."""
    r = _filter_bank(y, cfg.scales)
    n_s, n_f, h, w = r.shape
    p = cfg.patch if min(h, w) >= cfg.patch else min(h, w)
    th, tw = h // p, w // p
    r = r[:, :, : th * p, : tw * p].reshape(n_s, n_f, th, p, tw, p)
    r = r.transpose(2, 4, 0, 1, 3, 5).reshape(th * tw, n_s, n_f, p * p)
    return np.matmul(r, r.swapaxes(-1, -2)) / float(p * p)


def texture_distance_from_grams(g_orig: np.ndarray, g_rec: np.ndarray, cfg: TextureConfig) -> float:
    """Mean over patches and scales of ||G_r - G_o||_F / (||G_o||_F + ||G_r||_F + 5 * floor), each in [0, 1]."""
    n_f = g_orig.shape[-1]
    flat_o = g_orig.reshape(*g_orig.shape[:2], -1)
    flat_r = g_rec.reshape(*g_rec.shape[:2], -1)
    num = np.linalg.norm(flat_r - flat_o, axis=-1)
    den = np.linalg.norm(flat_o, axis=-1) + np.linalg.norm(flat_r, axis=-1) + n_f * cfg.floor
    return float(np.mean(num / den))


def hf_energy(y: np.ndarray, band: float) -> float:
    """Energy of the Hann-windowed luma spectrum at radial frequencies >= band cycles/pixel."""
    h, w = y.shape
    win = np.outer(np.hanning(h), np.hanning(w)) if h > 1 and w > 1 else np.ones((h, w))
    spec = np.abs(np.fft.rfft2((y - y.mean()) * win)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    mask = np.sqrt(fy**2 + fx**2) >= band
    # the rfft half-plane counts every column except DC (and Nyquist) twice in the full spectrum
    weight = np.full(fx.shape, 2.0)
    weight[:, 0] = 1.0
    if w % 2 == 0:
        weight[:, -1] = 1.0
    return float((spec * mask * weight).sum() / (h * w))


def energy_ratio(rec: float, orig: float) -> float:
    """The HF ratio of two band energies; 1 (neutral) when neither has any (flat images)."""
    if rec <= HF_FLOOR and orig <= HF_FLOOR:
        return 1.0
    return rec / max(orig, HF_FLOOR)


@dataclass
class TextureReference:
    """The original's side of every texture metric, computed once per image."""

    rgb: np.ndarray
    cfg: TextureConfig
    lattice: float
    grams: np.ndarray
    hf: float

    @classmethod
    def of(cls, orig: np.ndarray, cfg: TextureConfig | None = None) -> "TextureReference":
        cfg = cfg or TextureConfig()
        y = luma(orig)
        period = lattice_period(cfg.periods)
        return cls(rgb=orig, cfg=cfg, lattice=lattice_energy(orig.astype(np.float64), period),
                   grams=patch_grams(y, cfg), hf=hf_energy(y, cfg.hf_band))

    def scores(self, rec: np.ndarray) -> dict[str, float]:
        if rec.shape != self.rgb.shape:
            raise ValueError(f"reconstruction is {rec.shape[1]}x{rec.shape[0]}, original {self.rgb.shape[1]}x{self.rgb.shape[0]}")
        cfg = self.cfg
        period = lattice_period(cfg.periods)
        err = rec.astype(np.float64) - self.rgb.astype(np.float64)
        y = luma(rec)
        return {
            "checkerboard": periodic_excess(err, period) / max(self.lattice, CB_FLOOR),
            "texture-distance": texture_distance_from_grams(self.grams, patch_grams(y, cfg), cfg),
            "hf-ratio": energy_ratio(hf_energy(y, cfg.hf_band), self.hf),
        }


def checkerboard_score(orig: np.ndarray, rec: np.ndarray, cfg: TextureConfig | None = None) -> float:
    cfg = cfg or TextureConfig()
    period = lattice_period(cfg.periods)
    err = rec.astype(np.float64) - orig.astype(np.float64)
    return periodic_excess(err, period) / max(lattice_energy(orig.astype(np.float64), period), CB_FLOOR)


def texture_distance(orig: np.ndarray, rec: np.ndarray, cfg: TextureConfig | None = None) -> float:
    cfg = cfg or TextureConfig()
    return texture_distance_from_grams(patch_grams(luma(orig), cfg), patch_grams(luma(rec), cfg), cfg)


def hf_ratio(orig: np.ndarray, rec: np.ndarray, cfg: TextureConfig | None = None) -> float:
    cfg = cfg or TextureConfig()
    return energy_ratio(hf_energy(luma(rec), cfg.hf_band), hf_energy(luma(orig), cfg.hf_band))


NEUTRAL = {"checkerboard": 0.0, "texture-distance": 0.0, "hf-ratio": 1.0}
