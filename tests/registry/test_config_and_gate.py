"""The registry: params.yaml section, the gate's rules on measured numbers, model references."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from texpress.errors import CheckpointError, ConfigError, TexpressError
from texpress.evaluate.bdrate import rate_delta_at
from texpress.params import load_params
from texpress.registry.compare import CANDIDATE, CHAMPION, Comparison
from texpress.registry.config import GateConfig, RegistryConfig
from texpress.registry.gate import judge, quality_delta
from texpress.registry.store import RegistryError, parse_ref

ROOT = Path(__file__).resolve().parents[2]
JPEG = [{"bpp": b, "psnr-rgb": q, "ms-ssim-rgb": s} for b, q, s in
        ((0.2, 24.0, 0.85), (0.4, 28.0, 0.92), (0.8, 32.0, 0.96), (1.6, 36.0, 0.985))]


def test_params_yaml_section_builds_the_config():
    cfg = RegistryConfig.from_dict(load_params(ROOT / "params.yaml", "registry"))
    assert cfg.gate.anchor == "jpeg" and cfg.promote and not cfg.register_on_train
    assert RegistryConfig.from_dict(cfg.to_dict()) == cfg  # every key of the section is a field, and back


@pytest.mark.parametrize("section, message", [
    ({"gate": {"max_rate_delta": 0, "typo": 1}}, "unknown registry.gate keys: typo"),
    ({"promte": True}, "unknown registry keys: promte"),
    ({"gate": {"anchor": "bmp"}}, "unknown baseline"),
    ({"gate": {"speed_repeats": 0}}, "speed_repeats"),
    ({"name": "bad name!"}, "model name"),
    ({"crop": [8, 8]}, "crop"),
])
def test_bad_sections_are_one_line_config_errors(section, message):
    with pytest.raises(ConfigError, match=message) as exc:
        RegistryConfig.from_dict(section)
    assert "\n" not in str(exc.value)


def point(bpp, psnr, ms_ssim, texture=0.3, checker=0.1):
    return {"bpp": bpp, "psnr-rgb": psnr, "ms-ssim-rgb": ms_ssim, "texture-distance": texture, "checkerboard": checker}


def comparison(cand: dict, champ: dict | None, speed=(100.0, 100.0)) -> Comparison:
    """Measured numbers as compare() returns them, with the equal-quality deltas computed by the
    evaluation layer's own function against the JPEG curve."""
    curves = {CANDIDATE: [cand], "jpeg": JPEG} | ({CHAMPION: [champ]} if champ else {})
    vs = {}
    for label in (CANDIDATE, CHAMPION) if champ else (CANDIDATE,):
        p = curves[label][0]
        row = {}
        for m in ("psnr-rgb", "ms-ssim-rgb"):
            q = [j[m] for j in JPEG]
            try:
                row[m] = [rate_delta_at([j["bpp"] for j in JPEG], q, p["bpp"], p[m])]
            except Exception:
                row[m] = [None]
        vs[label] = row
    return Comparison("jpeg", curves, vs, {CANDIDATE: speed[0], CHAMPION: speed[1]}, ["a.png"])


def by_name(checks):
    return {c.name: c for c in checks}


def test_equal_quality_through_the_anchor():
    # same quality, 10 % fewer bits: the candidate needs 10 % fewer bits at equal quality
    cmp = comparison(point(0.36, 28.0, 0.92), point(0.40, 28.0, 0.92))
    value, how = quality_delta(cmp, "psnr-rgb")
    assert value == pytest.approx(-10.0, abs=1e-6) and "equal quality" in how
    checks = by_name(judge(cmp, GateConfig()))
    assert checks["rate_delta_psnr-rgb"].passed and checks["rate_delta_ms-ssim-rgb"].passed
    # and the other way round it is refused
    assert not by_name(judge(comparison(point(0.40, 28.0, 0.92), point(0.36, 28.0, 0.92)), GateConfig()))[
        "rate_delta_psnr-rgb"].passed


def test_threshold_allows_a_small_loss():
    cmp = comparison(point(0.42, 28.0, 0.92), point(0.40, 28.0, 0.92))  # 5 % more bits
    assert not by_name(judge(cmp, GateConfig()))["rate_delta_psnr-rgb"].passed
    assert by_name(judge(cmp, GateConfig(max_rate_delta=6.0)))["rate_delta_psnr-rgb"].passed


def test_outside_the_anchor_range_only_dominance_counts():
    low = 10.0  # far below JPEG's lowest PSNR
    wins = by_name(judge(comparison(point(1.0, low + 2, 0.3), point(1.0, low, 0.2)), GateConfig()))
    assert wins["rate_delta_psnr-rgb"].passed and "dominates" in wins["rate_delta_psnr-rgb"].note
    loses = by_name(judge(comparison(point(1.0, low, 0.2), point(1.0, low + 2, 0.3)), GateConfig()))
    assert not loses["rate_delta_psnr-rgb"].passed and loses["rate_delta_psnr-rgb"].value is None
    mixed = by_name(judge(comparison(point(0.9, low, 0.2), point(1.0, low + 2, 0.3)), GateConfig()))
    assert not mixed["rate_delta_psnr-rgb"].passed and "not comparable" in mixed["rate_delta_psnr-rgb"].note


def test_texture_checkerboard_and_speed_regressions_are_refused():
    good = point(0.36, 28.0, 0.92)
    base = by_name(judge(comparison(good, point(0.40, 28.0, 0.92)), GateConfig()))
    assert all(c.passed for c in base.values())
    tex = by_name(judge(comparison(point(0.36, 28.0, 0.92, texture=0.35), point(0.40, 28.0, 0.92)), GateConfig()))
    assert not tex["texture-distance_increase"].passed and tex["texture-distance_increase"].value == pytest.approx(0.05)
    chk = by_name(judge(comparison(point(0.36, 28.0, 0.92, checker=0.2), point(0.40, 28.0, 0.92)), GateConfig()))
    assert not chk["checkerboard_increase"].passed
    slow = by_name(judge(comparison(good, point(0.40, 28.0, 0.92), speed=(130.0, 100.0)), GateConfig()))
    assert not slow["decode_slowdown"].passed and slow["decode_slowdown"].value == pytest.approx(0.3)
    assert by_name(judge(comparison(good, point(0.40, 28.0, 0.92), speed=(130.0, 100.0)),
                         GateConfig(speed_tolerance=0.35)))["decode_slowdown"].passed


def test_floors_without_a_champion():
    beats = by_name(judge(comparison(point(0.30, 28.0, 0.92), None), GateConfig()))
    assert list(beats) == ["rate_vs_jpeg"] and beats["rate_vs_jpeg"].passed
    worse = by_name(judge(comparison(point(0.50, 28.0, 0.92), None), GateConfig()))
    assert not worse["rate_vs_jpeg"].passed
    outside = by_name(judge(comparison(point(0.50, 12.0, 0.3), None), GateConfig()))
    assert not outside["rate_vs_jpeg"].passed and "outside" in outside["rate_vs_jpeg"].note
    psnr = by_name(judge(comparison(point(0.50, 12.0, 0.3), None),
                         GateConfig(floor_max_rate_delta=None, floor_min_psnr=11.0)))
    assert list(psnr) == ["psnr"] and psnr["psnr"].passed
    assert not judge(comparison(point(0.50, 12.0, 0.3), None), GateConfig(floor_max_rate_delta=None,
                                                                         floor_min_psnr=13.0))[0].passed
    assert math.isclose(psnr["psnr"].value, 12.0)


@pytest.mark.parametrize("ref, parsed", [
    ("models:/texpress-lite@champion", ("texpress-lite", None, "champion")),
    ("models:/texpress-lite/3", ("texpress-lite", "3", None)),
    ("texpress-base@challenger", ("texpress-base", None, "challenger")),
])
def test_model_references(ref, parsed):
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["models:/texpress-lite/abc", "models:/x@", "models:/@champion", "models:/a b/1"])
def test_bad_model_references(ref):
    with pytest.raises(RegistryError):
        parse_ref(ref)


def test_the_codec_reads_files_and_leaves_model_uris_to_the_resolver(tmp_path, monkeypatch):
    """read_checkpoint takes a file: a models:/ URI is resolved before it (registry.refs), never by it."""
    from texpress.codec.checkpoint import read_checkpoint
    from texpress.registry.refs import resolve_checkpoint

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint("models:/texpress-lite@champion")
    with pytest.raises(TexpressError):  # the resolver asks the registry, which has no such model
        resolve_checkpoint("models:/texpress-lite@champion")
