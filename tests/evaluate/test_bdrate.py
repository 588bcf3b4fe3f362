"""BD-rate (PCHIP over log-rate) against CompressAI's published Kodak points, and its properties."""

from __future__ import annotations

import math

import pytest

from texpress.evaluate.bdrate import BDRateError, bd_rate, bd_rate_curves, rate_delta_at


def results(kodak, name):
    return kodak[name]["results"]


@pytest.mark.parametrize("anchor, expected", [("jpeg", -55.0), ("webp", -28.0), ("vtm", 30.0)])
def test_hyperprior_against_published_anchors(kodak, anchor, expected):
    """DESIGN.md reference numbers: bmshj2018-hyperprior is about -55% vs JPEG, -28% vs WebP, +30% vs VTM."""
    value = bd_rate_curves(results(kodak, anchor), results(kodak, "bmshj2018-hyperprior-mse"), "psnr-rgb")
    assert value == pytest.approx(expected, abs=1.5)


def test_exact_values_on_the_fixtures(kodak):
    hp = results(kodak, "bmshj2018-hyperprior-mse")
    assert bd_rate_curves(results(kodak, "jpeg"), hp) == pytest.approx(-54.99, abs=0.01)
    assert bd_rate_curves(results(kodak, "webp"), hp) == pytest.approx(-28.42, abs=0.01)
    assert bd_rate_curves(results(kodak, "vtm"), hp) == pytest.approx(30.49, abs=0.01)
    # MS-SSIM (compared in dB): the MSE-trained model gains less over JPEG than in PSNR
    assert bd_rate_curves(results(kodak, "jpeg"), hp, "ms-ssim-rgb") == pytest.approx(-50.12, abs=0.01)


def test_identical_curves_give_zero(kodak):
    r = results(kodak, "webp")
    assert bd_rate_curves(r, r) == pytest.approx(0.0, abs=1e-12)
    assert bd_rate_curves(r, r, "ms-ssim-rgb") == pytest.approx(0.0, abs=1e-12)


def test_a_curve_at_half_the_rate_is_minus_fifty_percent(kodak):
    r = results(kodak, "jpeg")
    assert bd_rate(r["bpp"], r["psnr-rgb"], [b / 2 for b in r["bpp"]], r["psnr-rgb"]) == pytest.approx(-50.0)


def test_swapping_the_curves_inverts_the_rate_ratio(kodak):
    a, b = results(kodak, "jpeg"), results(kodak, "bmshj2018-hyperprior-mse")
    x, y = bd_rate_curves(a, b), bd_rate_curves(b, a)
    assert (1 + x / 100) * (1 + y / 100) == pytest.approx(1.0)


def test_point_order_does_not_matter(kodak):
    a, b = results(kodak, "vtm"), results(kodak, "bmshj2018-hyperprior-mse")
    rev = {k: list(reversed(v)) for k, v in b.items()}
    assert bd_rate_curves(a, rev) == pytest.approx(bd_rate_curves(a, b))


def test_refuses_curves_it_cannot_compare():
    with pytest.raises(BDRateError, match="at least 2"):
        bd_rate([0.1, 0.2], [30, 32], [0.5], [31])
    with pytest.raises(BDRateError, match="do not overlap"):
        bd_rate([0.1, 0.2], [20, 22], [0.5, 0.6], [30, 32])
    with pytest.raises(BDRateError):
        bd_rate([0.1, 0.2, 0.3], [30, 31], [0.1, 0.2], [30, 31])


def test_rate_delta_of_a_point_on_the_curve_is_zero(kodak):
    r = results(kodak, "jpeg")
    assert rate_delta_at(r["bpp"], r["psnr-rgb"], r["bpp"][5], r["psnr-rgb"][5]) == pytest.approx(0.0, abs=1e-9)
    assert rate_delta_at(r["bpp"], r["psnr-rgb"], r["bpp"][5] / 2, r["psnr-rgb"][5]) == pytest.approx(-50.0)
    with pytest.raises(BDRateError, match="outside"):
        rate_delta_at(r["bpp"], r["psnr-rgb"], 0.5, 60.0)


def test_nan_points_are_ignored():
    assert math.isfinite(bd_rate([0.1, 0.2, 0.4], [28, 30, float("nan")], [0.1, 0.2], [28.5, 30.5]))


def test_missing_and_non_numeric_values():
    """Curve files may hold null (NaN written as JSON); anything else that is not a number is an error."""
    anchor = {"bpp": [0.1, 0.2, 0.4], "psnr-rgb": [28, 30, 32], "ms-ssim-rgb": [0.9, 0.95, None]}
    test = {"bpp": [0.1, 0.2, 0.3], "psnr-rgb": [28.5, None, 31], "ms-ssim-rgb": [0.91, 0.94, 0.96]}
    assert math.isfinite(bd_rate_curves(anchor, test))
    assert math.isfinite(bd_rate_curves(anchor, test, "ms-ssim-rgb"))
    for bad in (["a", "b", "c"], 30.0, [{"x": 1}, 2, 3]):
        with pytest.raises(BDRateError, match="curve B holds values that are not numbers"):
            bd_rate_curves(anchor, {**test, "psnr-rgb": bad})
    with pytest.raises(BDRateError, match="curve A holds values that are not numbers"):
        bd_rate_curves({**anchor, "bpp": ["x", 1, 2]}, test)
