"""Sanity of the texture metrics on real photos: neutral on identity, and each reacts to what it is
meant to catch (blur, invented noise or texture, periodic upscale artifacts) in the right direction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from texpress.evaluate.config import TextureConfig
from texpress.evaluate.texture import (NEUTRAL, TextureReference, checkerboard_score, hf_ratio, periodic_excess,
                                       texture_distance)


def to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def blur(rgb: np.ndarray, sigma: float = 1.2) -> np.ndarray:
    return to_u8(gaussian_filter(rgb.astype(np.float64), (sigma, sigma, 0)))


def add_noise(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return to_u8(rgb + np.random.default_rng(seed).normal(0, sigma, rgb.shape))


def add_periodic(rgb: np.ndarray, period: int, amplitude: float = 3.0) -> np.ndarray:
    """A square wave of the given period on both axes (period 2 is the classic checkerboard)."""
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    wave = np.sign(np.sin(2 * np.pi * (yy + 0.5) / period)) * np.sign(np.sin(2 * np.pi * (xx + 0.5) / period))
    return to_u8(rgb + amplitude * wave[..., None])


def test_identity_gives_the_neutral_value(clean_crops):
    for name, rgb in clean_crops.items():
        scores = TextureReference.of(rgb).scores(rgb.copy())
        assert scores == NEUTRAL, name


def test_identical_flat_images_give_the_neutral_value():
    flat = np.full((96, 128, 3), 120, np.uint8)
    assert TextureReference.of(flat).scores(flat.copy()) == NEUTRAL
    assert hf_ratio(flat, flat) == 1.0
    invented = add_noise(flat, 4.0)
    assert hf_ratio(flat, invented) > 1e3 and checkerboard_score(flat, add_periodic(flat, 2)) > 1.0


def test_reference_scores_match_the_standalone_functions(clean_crops):
    rgb = clean_crops["coffee"]
    rec = add_periodic(blur(rgb, 0.8), 4)
    scores = TextureReference.of(rgb).scores(rec)
    assert scores["checkerboard"] == pytest.approx(checkerboard_score(rgb, rec))
    assert scores["texture-distance"] == pytest.approx(texture_distance(rgb, rec))
    assert scores["hf-ratio"] == pytest.approx(hf_ratio(rgb, rec))


@pytest.mark.parametrize("sigma", [0.7, 1.5])
def test_blur_lowers_the_hf_ratio_below_one(clean_crops, sigma):
    for name, rgb in clean_crops.items():
        r = hf_ratio(rgb, blur(rgb, sigma))
        assert r < 0.5, (name, r)


def test_added_noise_raises_the_hf_ratio_above_one(clean_crops):
    for name, rgb in clean_crops.items():
        r = hf_ratio(rgb, add_noise(rgb, 6.0))
        assert r > 1.01, (name, r)


def test_invented_texture_on_a_smooth_image_raises_the_hf_ratio_far_above_one(clean_crops):
    smooth = blur(clean_crops["astronaut"], 3.0)
    texture = clean_crops["gravel"].astype(np.float64)
    detail = texture - gaussian_filter(texture, (2, 2, 0))
    assert hf_ratio(smooth, to_u8(smooth + 0.5 * detail)) > 10


@pytest.mark.parametrize("period", [2, 4, 8, 16])
def test_an_added_checkerboard_clearly_raises_the_checkerboard_score(clean_crops, period):
    for name, rgb in clean_crops.items():
        plain = checkerboard_score(rgb, add_noise(rgb, 3.0))  # aperiodic error of similar energy
        periodic = checkerboard_score(rgb, add_periodic(rgb, period))
        assert periodic > 0.03, (name, period, periodic)
        assert periodic > 20 * max(plain, 1e-4), (name, period, periodic, plain)


def test_checkerboard_score_ignores_blur_and_periods_the_upscale_layers_cannot_make(clean_crops):
    for name, rgb in clean_crops.items():
        assert checkerboard_score(rgb, blur(rgb, 0.7)) < 0.01, name
        for period in (3, 5):
            assert checkerboard_score(rgb, add_periodic(rgb, period)) < 0.01, (name, period)


def test_checkerboard_score_grows_with_the_artifact(clean_crops):
    rgb = clean_crops["chelsea"]
    scores = [checkerboard_score(rgb, add_periodic(rgb, 2, a)) for a in (1.0, 2.0, 4.0)]
    assert scores[0] < scores[1] < scores[2]


def test_periodic_excess_of_a_pure_pattern_is_its_energy():
    """A period-P pattern lies entirely on the lattice: its excess is its mean energy (x T^2 / T^2)."""
    yy, xx = np.mgrid[:128, :128]
    wave = np.where((yy + xx) % 2 == 0, 3.0, -3.0)[..., None]
    assert periodic_excess(wave, 16) == pytest.approx(9.0, rel=1e-9)


def test_texture_distance_rises_for_blur(clean_crops):
    for name, rgb in clean_crops.items():
        mild, strong = texture_distance(rgb, blur(rgb, 0.7)), texture_distance(rgb, blur(rgb, 1.5))
        assert 0.03 < mild < strong <= 1.0, (name, mild, strong)


def test_texture_distance_rises_for_invented_texture(clean_crops):
    smooth = blur(clean_crops["astronaut"], 3.0)
    texture = clean_crops["brick"].astype(np.float64)
    detail = texture - gaussian_filter(texture, (2, 2, 0))
    invented = texture_distance(smooth, to_u8(smooth + 0.5 * detail))
    noise = texture_distance(smooth, add_noise(smooth, 4.0))
    assert invented > 0.1
    assert noise > 0.02
    # a faithful copy of the smooth image (re-quantised by a 1-level shift) stays near zero
    assert texture_distance(smooth, to_u8(smooth.astype(np.float64) + 1)) < 0.005


def test_texture_distance_is_bounded_and_symmetric(clean_crops):
    a, b = clean_crops["grass"], blur(clean_crops["grass"], 2.0)
    d1, d2 = texture_distance(a, b), texture_distance(b, a)
    assert d1 == pytest.approx(d2)
    assert 0.0 < d1 <= 1.0


def test_metrics_work_on_small_and_odd_sized_images(clean_crops):
    rgb = clean_crops["coffee"][:37, :53]
    cfg = TextureConfig()
    scores = TextureReference.of(rgb, cfg).scores(blur(rgb))
    assert np.isfinite(scores["checkerboard"]) and np.isfinite(scores["texture-distance"])
    assert scores["hf-ratio"] < 1
    tiny = clean_crops["coffee"][:20, :20]  # below two lattice periods: no checkerboard score
    assert np.isnan(TextureReference.of(tiny, cfg).scores(tiny)["checkerboard"])
