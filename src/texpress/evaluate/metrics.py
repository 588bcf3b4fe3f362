"""Fidelity metrics measured the way the field reports them: bpp from the real bitstream, PSNR on 8-bit
RGB, MS-SSIM on 8-bit RGB (pytorch-msssim). Texture metrics live in texpress.evaluate.texture.

All functions take uint8 HxWx3 arrays (original first, reconstruction second)."""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_WIN = 11
MAX_PSNR = 100.0  # reported for identical images instead of infinity (keeps JSON and means finite)


def check_pair(orig: np.ndarray, rec: np.ndarray) -> None:
    if orig.shape != rec.shape:
        raise ValueError(f"reconstruction is {rec.shape[1]}x{rec.shape[0]}, original {orig.shape[1]}x{orig.shape[0]}")
    if orig.ndim != 3 or orig.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB arrays, got shape {orig.shape}")


def bpp(num_bytes: int, width: int, height: int) -> float:
    """Bits per pixel of a bitstream of num_bytes for a width x height image."""
    return 8.0 * num_bytes / float(width * height)


def psnr(orig: np.ndarray, rec: np.ndarray) -> float:
    """PSNR in dB over all RGB samples, peak 255; MAX_PSNR for identical images."""
    check_pair(orig, rec)
    mse = float(np.mean((orig.astype(np.float64) - rec.astype(np.float64)) ** 2))
    if mse == 0.0:
        return MAX_PSNR
    return min(MAX_PSNR, 10.0 * math.log10(255.0**2 / mse))


def ms_ssim_levels(height: int, width: int) -> int:
    """How many MS-SSIM scales fit: every scale needs a side above the 11-pixel window (5 for Kodak-size)."""
    side = min(height, width)
    levels = 0
    while levels < len(MS_SSIM_WEIGHTS) and side > (MS_SSIM_WIN - 1) * 2**levels:
        levels += 1
    return levels


@contextmanager
def single_thread():
    """Run torch ops on one intra-op thread, then restore the setting.

    MS-SSIM is many small grouped convolutions: with two or more threads on a busy machine they spend
    most of their time synchronising (10x slower measured on the shared 2-core machine)."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)  # a writable copy


def ms_ssim(orig: np.ndarray, rec: np.ndarray) -> float:
    """MS-SSIM on RGB (data range 255), as CompressAI reports it (`ms-ssim-rgb`).

    Images whose short side is 160 px or less cannot hold the five standard scales; they use the
    scales that fit with the first weights renormalised to sum to 1 (documented in docs/metrics.md).
    NaN when not even one 11x11 window fits."""
    check_pair(orig, rec)
    from pytorch_msssim import ms_ssim as _ms_ssim

    levels = ms_ssim_levels(orig.shape[0], orig.shape[1])
    x, y = _to_tensor(orig), _to_tensor(rec)
    with torch.no_grad(), single_thread():
        if levels == len(MS_SSIM_WEIGHTS):
            return float(_ms_ssim(x, y, data_range=255, size_average=True))
        if levels == 0:
            return float("nan")
        return _ms_ssim_reduced(x, y, levels)


def _ms_ssim_reduced(x: torch.Tensor, y: torch.Tensor, levels: int) -> float:
    """The MS-SSIM recursion of pytorch-msssim with fewer scales (it asserts all five for any weights)."""
    import torch.nn.functional as F
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    w = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=torch.float32)
    w = w / w.sum()
    win = _fspecial_gauss_1d(MS_SSIM_WIN, 1.5).repeat([x.shape[1], 1, 1, 1])
    mcs = []
    for i in range(levels):
        ssim_pc, cs = _ssim(x, y, win=win, data_range=255, size_average=False, K=(0.01, 0.03))
        if i < levels - 1:
            mcs.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
    vals = torch.stack(mcs + [torch.relu(ssim_pc)], dim=0)
    return float(torch.prod(vals ** w.view(-1, 1, 1), dim=0).mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on the dB scale used in R-D plots and MS-SSIM BD-rates: -10 log10(1 - MS-SSIM)."""
    return -10.0 * math.log10(max(1.0 - value, 1e-10))
