"""BD-rates and equal-quality rate differences as the reports compute them from curve points."""

from __future__ import annotations

import pytest

from texpress.evaluate.curves import Curve, Record, aggregate
from texpress.evaluate.report import bd_rates, headline_metrics, rate_deltas


def curve(name, kind, bpp, psnr, msssim):
    return Curve(name, name, kind, points=[{"point": f"p{i}", "bpp": b, "psnr-rgb": p, "ms-ssim-rgb": m}
                                           for i, (b, p, m) in enumerate(zip(bpp, psnr, msssim))])


@pytest.fixture()
def curves(kodak):
    jpeg = kodak["jpeg"]["results"]
    base = curve("jpeg", "baseline", jpeg["bpp"], jpeg["psnr-rgb"], jpeg["ms-ssim-rgb"])
    # a model that needs 80% of JPEG's bits at every JPEG quality
    idx = [2, 5, 8, 11, 14]
    model = curve("m", "model", [0.8 * jpeg["bpp"][i] for i in idx], [jpeg["psnr-rgb"][i] for i in idx],
                  [jpeg["ms-ssim-rgb"][i] for i in idx])
    single = curve("one", "model", [0.5 * jpeg["bpp"][6]], [jpeg["psnr-rgb"][6]], [jpeg["ms-ssim-rgb"][6]])
    return {"m": model, "one": single, "jpeg": base}


def test_bd_rate_of_every_model_against_every_baseline(curves):
    bd = bd_rates(curves)
    assert set(bd) == {"m", "one"}
    assert bd["m"]["jpeg"]["psnr-rgb"] == pytest.approx(-20.0, abs=0.3)
    assert bd["m"]["jpeg"]["ms-ssim-rgb"] == pytest.approx(-20.0, abs=0.3)
    assert "note" not in bd["m"]["jpeg"]
    assert bd["one"]["jpeg"]["psnr-rgb"] is None and "at least 2" in bd["one"]["jpeg"]["note"]


def test_a_bd_rate_on_a_sliver_of_overlap_is_flagged(kodak, curves):
    """A model curve reaching far below the baseline's lowest quality: the BD-rate only speaks for the
    small part of the model's range the baseline covers, and says so."""
    jpeg = kodak["jpeg"]["results"]
    low = min(jpeg["psnr-rgb"])
    curves["low"] = curve("low", "model", [0.02, 0.05, 0.1, 0.2], [low - 8, low - 4, low - 0.5, low + 0.5],
                          [0.80, 0.85, 0.9, 0.93])
    bd = bd_rates(curves)
    assert bd["low"]["jpeg"]["overlap"]["psnr-rgb"] == pytest.approx(0.5 / 8.5)
    assert "psnr-rgb" in bd["low"]["jpeg"]["sliver"] and "a sliver" in bd["low"]["jpeg"]["note"]
    assert bd["m"]["jpeg"]["overlap"]["psnr-rgb"] == pytest.approx(1.0) and bd["m"]["jpeg"]["sliver"] == []
    metrics = headline_metrics(curves, bd, rate_deltas(curves), 24)
    assert metrics["bd_rate"]["low_vs_jpeg"]["overlap"]["psnr-rgb"] < 0.5


def test_rate_delta_of_single_points_reaches_the_metrics(curves):
    deltas = rate_deltas(curves)
    assert deltas["one"]["jpeg"]["psnr-rgb"] == [pytest.approx(-50.0)]
    assert deltas["one"]["jpeg"]["ms-ssim-rgb"] == [pytest.approx(-50.0)]
    metrics = headline_metrics(curves, bd_rates(curves), deltas, 24)
    assert metrics["rate_delta"]["one_vs_jpeg"]["psnr-rgb"] == pytest.approx(-50.0)
    assert metrics["bd_rate"]["m_vs_jpeg"]["psnr-rgb"] == pytest.approx(-20.0, abs=0.3)
    assert metrics["one"]["bpp"] == pytest.approx(curves["one"].points[0]["bpp"])
    assert set(metrics["m"]) == {f"p{i}" for i in range(5)}


def _record(image, point, bpp, psnr, hf):
    return Record(image=image, width=10, height=10, curve="c", kind="baseline", point=point, quality=1.0, bytes=1,
                  bpp=bpp, psnr_rgb=psnr, ms_ssim_rgb=0.9, checkerboard=0.0, texture_distance=0.1, hf_ratio=hf,
                  encode_s=0.0, decode_s=0.0)


def test_aggregate_means_over_the_given_images_geometric_for_the_hf_ratio():
    recs = [_record("a", "q1", 1.0, 30.0, 0.5), _record("b", "q1", 3.0, 40.0, 2.0), _record("c", "q1", 100, 0, 9),
            _record("a", "q0", 0.5, 25.0, 0.25), _record("b", "q0", 0.7, 27.0, 1.0)]
    curves = {"c": Curve("c", "c", "baseline")}
    aggregate(recs, curves, ["a", "b"])
    p0, p1 = curves["c"].points  # ordered by rate
    assert p0["point"] == "q0" and p1["point"] == "q1"
    assert p1["bpp"] == pytest.approx(2.0) and p1["psnr-rgb"] == pytest.approx(35.0)
    assert p1["hf-ratio"] == pytest.approx(1.0)  # geometric mean of 0.5 and 2
    assert p1["images"] == 2
