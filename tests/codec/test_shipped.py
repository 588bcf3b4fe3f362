"""The trained models shipped in models/: they load, code, match their recorded fingerprints, and the
CLI uses them when --model is omitted."""

import json

import numpy as np
import pytest

from texpress.codec import bitstream
from texpress.codec.api import Codec
from texpress.codec.checkpoint import RAGGED_VERSION, read_checkpoint
from texpress.codec.shipped import MANIFEST, default_model, models_dir, shipped_models
from texpress.errors import CheckpointError
from texpress.evaluate.baselines import BASELINES
from texpress.evaluate.metrics import bpp, psnr

from .conftest import crop
from .test_cli import texpress

MAX_BYTES = 15 * 2**20


@pytest.fixture(scope="module")
def photo(photos):
    return np.asarray(crop(photos[0], 256, 256))


def test_manifest_names_a_lite_curve_and_a_default_lite():
    models = shipped_models()
    assert sum(m.preset == "lite" for m in models.values()) >= 2  # several rates: a curve
    assert default_model().preset in ("lite", "lite-vr")
    assert json.loads((models_dir() / MANIFEST).read_text())["default"] in models


@pytest.mark.parametrize("name", sorted(json.loads((models_dir() / MANIFEST).read_text())["models"]))
def test_each_shipped_model_loads_codes_and_matches_its_fingerprint(name, photo):
    model = shipped_models()[name]
    assert model.path.stat().st_size <= MAX_BYTES
    codec = Codec.from_checkpoint(model.path)
    assert codec.fingerprint == model.fingerprint
    data = codec.compress(photo)
    rec = np.asarray(codec.decompress(data).convert("RGB"))
    assert rec.shape == photo.shape
    assert psnr(photo, rec) > 18  # trained: an untrained model gives about 10 dB
    assert bpp(len(data), 256, 256) < 2


def test_rate_grows_along_each_shipped_curve(photo):
    curves: dict[str, list] = {}
    for m in shipped_models().values():
        curves.setdefault(m.curve, []).append(m)
    assert len(curves["lite"]) >= 2
    for points in curves.values():
        if len(points) == 1 and points[0].info.get("rate_lambdas"):  # one variable-rate model: its quality knob
            codec = Codec.from_checkpoint(points[0].path)
            rates = [len(codec.compress(photo, quality=q)) for q in (0, 25, 50, 75, 100)]
        else:
            points.sort(key=lambda m: m.info["lambda"], reverse=True)  # a larger rate weight: fewer bits
            rates = [len(Codec.from_checkpoint(m.path).compress(photo)) for m in points]
        assert rates == sorted(rates), [m.name for m in points]


def test_ship_adds_a_float16_model_with_its_curve_and_val_numbers(tmp_path, photos, lite_ckpt, monkeypatch):
    folder = tmp_path / "shipped"
    monkeypatch.setenv("TEXPRESS_MODELS_DIR", str(folder))
    (tmp_path / "val").mkdir()
    crop(photos[2], 96, 64).save(tmp_path / "val" / "a.png")
    texpress("models", "ship", str(lite_ckpt), "--name", "x-q1", "--lambda", "0.6", "--val", str(tmp_path / "val"))
    texpress("models", "ship", str(lite_ckpt), "--name", "x-q1-gan", "--curve", "lite-gan", "--lambda", "0.6")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["default"] == "x-q1"  # the first model shipped
    plain, gan = manifest["models"]["x-q1"], manifest["models"]["x-q1-gan"]
    assert plain["curve"] == plain["preset"]  # by default, the curve of its preset
    assert (gan["curve"], gan["lambda"]) == ("lite-gan", 0.6)
    assert plain["val"]["images"] == 1 and plain["val"]["bpp"] > 0 and "val" not in gan
    assert Codec.from_checkpoint(folder / "x-q1-gan.ckpt").fingerprint == gan["fingerprint"]
    assert (folder / "x-q1.ckpt").stat().st_size < 0.75 * lite_ckpt.stat().st_size
    listing = texpress("models", "shipped").stdout
    assert "x-q1-gan" in listing and "lite-gan" in listing


def test_the_baseline_sweeps_reach_the_models_lowest_rate(photo):
    """Every codec that can go as low as the lowest shipped point does so at its lowest setting; the
    others (JPEG, WebP, JPEG XL) start at their lowest setting (tests/evaluate/test_baselines.py)."""
    lowest = min(len(Codec.from_checkpoint(m.path).compress(photo)) for m in shipped_models().values())
    floors = {name: len(b.encode(photo, b.default_qualities[0])) for name, b in BASELINES.items()}
    assert {n for n, size in floors.items() if size <= lowest} >= {"avif", "heic", "jpeg2000"}, (lowest, floors)


def test_compress_and_decompress_use_the_shipped_models_without_model(tmp_path, photos):
    src = tmp_path / "in"
    src.mkdir()
    crop(photos[1], 160, 120).save(src / "a.png")
    texpress("compress", str(src), "-o", str(tmp_path / "tpx"))
    data = (tmp_path / "tpx" / "a.tpx").read_bytes()
    assert bitstream.unpack(data).header.fingerprint == default_model().fingerprint
    # decompress finds the model each file names, here a shipped one that is not the default
    other = next(m for m in shipped_models().values() if m.name != default_model().name)
    texpress("compress", str(src / "a.png"), "-o", str(tmp_path / "tpx" / "other"), "--model", other.name)
    texpress("decompress", str(tmp_path / "tpx"), "-o", str(tmp_path / "png"))
    assert sorted(p.relative_to(tmp_path / "png").as_posix() for p in (tmp_path / "png").rglob("*.png")) == [
        "a.png", "other/a.png"]


def test_decompress_without_model_names_an_unknown_fingerprint(tmp_path, photos, lite_ckpt):
    crop(photos[1], 64, 64).save(tmp_path / "a.png")
    texpress("compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "tpx"), "-m", str(lite_ckpt))
    proc = texpress("decompress", str(tmp_path / "tpx"), "-o", str(tmp_path / "png"), check_rc=1)
    fp = Codec.from_checkpoint(lite_ckpt).fingerprint
    assert f"made by model {fp}" in proc.stderr and "--model" in proc.stderr


def test_a_checkpoint_compacted_to_float16_codes_what_its_fingerprint_says(tmp_path, lite_ckpt, photo):
    out = tmp_path / "half.ckpt"
    texpress("models", "compact", str(lite_ckpt), "-o", str(out))
    assert out.stat().st_size < 0.6 * lite_ckpt.stat().st_size  # float16 weights, CDF tables without padding
    payload = read_checkpoint(out)
    assert payload["format_version"] == RAGGED_VERSION
    full, half = Codec.from_checkpoint(lite_ckpt), Codec.from_checkpoint(out)
    assert half.fingerprint == payload["fingerprint"]  # the padded tables come back exactly
    data = half.compress(photo)
    assert Codec.from_checkpoint(out).decompress(data).size == (256, 256)
    a = np.asarray(full.decompress(full.compress(photo)).convert("RGB"), dtype=float)
    b = np.asarray(half.decompress(data).convert("RGB"), dtype=float)
    assert np.abs(a - b).mean() < 1.0  # float16 weights: the same model to within rounding


def test_model_refs_take_shipped_names_and_default_to_the_shipped_lite():
    from texpress.registry.refs import resolve_checkpoint

    assert resolve_checkpoint(None) == default_model().path
    for model in shipped_models().values():
        assert resolve_checkpoint(model.name) == model.path
    assert Codec.from_checkpoint(resolve_checkpoint(default_model().name)).fingerprint == default_model().fingerprint
    with pytest.raises(CheckpointError, match="no-such-model: no such checkpoint file"):
        resolve_checkpoint("no-such-model")
