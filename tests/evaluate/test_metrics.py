"""bpp, PSNR and MS-SSIM as the field reports them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim

from texpress.evaluate import metrics


def test_bpp_counts_every_byte():
    assert metrics.bpp(1000, 100, 80) == pytest.approx(1.0)
    assert metrics.bpp(0, 10, 10) == 0.0


def test_psnr_identity_and_known_error(small_crop):
    assert metrics.psnr(small_crop, small_crop) == metrics.MAX_PSNR
    shifted = np.clip(small_crop.astype(np.int16) + np.where(np.arange(small_crop.size).reshape(small_crop.shape) % 2,
                                                               2, -2), 0, 255).astype(np.uint8)
    mse = np.mean((shifted.astype(np.float64) - small_crop) ** 2)
    assert metrics.psnr(small_crop, shifted) == pytest.approx(10 * math.log10(255**2 / mse))


def test_psnr_refuses_mismatched_shapes(small_crop):
    with pytest.raises(ValueError):
        metrics.psnr(small_crop, small_crop[:-1])


def test_ms_ssim_matches_pytorch_msssim_on_full_size_images(clean_crops):
    a = clean_crops["astronaut"]
    b = np.clip(a.astype(np.int16) + np.random.default_rng(0).integers(-8, 9, a.shape), 0, 255).astype(np.uint8)
    ours = metrics.ms_ssim(a, b)
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float()
    y = torch.from_numpy(b).permute(2, 0, 1)[None].float()
    assert ours == pytest.approx(float(reference_ms_ssim(x, y, data_range=255)), abs=1e-6)
    assert metrics.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert 0.5 < ours < 1.0


def test_ms_ssim_on_small_images_uses_the_scales_that_fit(small_crop):
    assert metrics.ms_ssim_levels(512, 768) == 5
    assert metrics.ms_ssim_levels(160, 192) == 4  # 160 is not above 160
    assert metrics.ms_ssim_levels(10, 50) == 0
    noisy = np.clip(small_crop + np.random.default_rng(1).normal(0, 6, small_crop.shape), 0, 255).astype(np.uint8)
    assert metrics.ms_ssim(small_crop, small_crop) == pytest.approx(1.0, abs=1e-6)
    value = metrics.ms_ssim(small_crop, noisy)
    assert 0.5 < value < 1.0
    assert math.isnan(metrics.ms_ssim(small_crop[:10, :10], small_crop[:10, :10]))


def test_ms_ssim_restores_the_thread_setting(small_crop):
    before = torch.get_num_threads()
    metrics.ms_ssim(small_crop, small_crop)
    assert torch.get_num_threads() == before


def test_ms_ssim_db():
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert metrics.ms_ssim_db(1.0) == pytest.approx(100.0)
