"""The upper-layer study (docs/texture.md): the top one or two upscale blocks of a model can be another
kind (4x4 deconv, sub-pixel conv with ICNR, resize-then-conv); every kind builds, trains a step and
codes an image; a model derived from lite-q1 keeps all its other weights; existing checkpoints keep
their bytes and fingerprints; a fresh ICNR sub-pixel upscale has no checkerboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from texpress.codec.api import Codec
from texpress.codec.checkpoint import build_model, fingerprint, read_checkpoint, transplant
from texpress.codec.config import ModelConfig, get_preset, preset_name
from texpress.codec.discriminator import ConditionalDiscriminator
from texpress.codec.layers import SubpixelUp, upscale
from texpress.errors import ConfigError
from texpress.evaluate.texture import checkerboard_score
from texpress.train.config import TrainConfig
from texpress.train.losses import CodecLoss
from texpress.train.rate_control import RateController
from texpress.train.train_step import build_trainables, train_step

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "shipped"
KINDS = [("deconv", 4), ("subpixel", 3), ("resize", 3)]


def top_config(kind: str, kernel: int, blocks: int = 1) -> ModelConfig:
    return get_preset("lite").replace(top_upscale=kind, top_upscales=blocks, top_kernel=kernel)


def test_the_default_changes_nothing():
    lite = get_preset("lite")
    assert lite.upscale_of(3) == lite.upscale_of(0) == ("deconv", 5)
    assert not {"top_upscale", "top_upscales", "top_kernel"} & set(lite.to_dict())  # checkpoint bytes as before
    cfg = top_config("subpixel", 3, 2)
    assert [cfg.upscale_of(i) for i in range(4)] == [("deconv", 5)] * 2 + [("subpixel", 3)] * 2
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert preset_name(cfg) == "custom" and preset_name(lite) == "lite"
    assert top_config("resize", 0).upscale_of(3) == ("resize", 5)  # 0: the preset's up_kernel


@pytest.mark.parametrize("changes, message", [
    ({"top_upscale": "bilinear", "top_upscales": 1}, "top_upscale"),
    ({"top_upscale": "subpixel", "top_upscales": 3}, "top_upscales"),
    ({"top_upscale": "deconv", "top_upscales": 1, "top_kernel": 1}, "top_kernel"),
    ({"top_upscale": "resize", "top_upscales": 1, "top_kernel": -1}, "top_kernel"),
])
def test_bad_top_upscales_are_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        get_preset("lite").replace(**changes)


def test_shipped_checkpoints_keep_their_fingerprints():
    from texpress.codec.checkpoint import load_model

    manifest = json.loads((SHIPPED / "models.json").read_text())["models"]
    for name in ("lite-q1", "lite-q1-gan"):
        assert fingerprint(load_model(SHIPPED / f"{name}.ckpt")) == manifest[name]["fingerprint"]


@pytest.mark.parametrize("blocks", [1, 2])
@pytest.mark.parametrize("kind, kernel", KINDS)
def test_each_top_upscale_builds_trains_a_step_and_codes_an_image(kind, kernel, blocks, tmp_path):
    cfg = top_config(kind, kernel, blocks)
    model = build_model(cfg, seed=0)
    top = model.generator.ups[3][0]
    expected = {"deconv": nn.ConvTranspose2d, "subpixel": SubpixelUp, "resize": nn.Sequential}[kind]
    assert isinstance(top, expected)
    assert isinstance(model.generator.ups[1][0], nn.ConvTranspose2d)  # below the top: lite's 5x5 deconv
    assert isinstance(model.generator.ups[2][0], expected if blocks == 2 else nn.ConvTranspose2d)
    x = torch.rand(2, 3, 64, 64)
    assert model(x)["x_hat"].shape == x.shape

    train = TrainConfig(rd_steps=1, gan_steps=1, lr_decay_at=1.0, k_fm=1.0, k_fft=1.0)
    disc = ConditionalDiscriminator(cfg.latent_channels)
    t = build_trainables(model, disc, train)
    before = [p.detach().clone() for p in top.parameters()]
    rate = RateController(train.target_bpp, train.lambda_a, train.lambda_b)
    stats = [train_step(t, x, s, train, CodecLoss(train.k_m, k_fft=train.k_fft), rate) for s in range(2)]
    assert all(np.isfinite(v) for s in stats for v in s.values())
    assert any(not torch.equal(p, b) for p, b in zip(top.parameters(), before))

    from texpress.codec.checkpoint import save_checkpoint

    save_checkpoint(model, tmp_path / "m.ckpt")
    codec = Codec.from_checkpoint(tmp_path / "m.ckpt")
    assert codec.config == cfg
    rgb = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    from PIL import Image

    restored = codec.decompress(codec.compress(Image.fromarray(rgb)))
    assert restored.size == (90, 70)
    assert np.array_equal(np.asarray(restored), np.asarray(codec.reconstruct(Image.fromarray(rgb))))


@pytest.mark.parametrize("kind, kernel", KINDS)
def test_a_model_derived_from_lite_q1_keeps_every_other_weight(kind, kernel):
    source = read_checkpoint(SHIPPED / "lite-q1.ckpt")
    cfg = ModelConfig.from_dict(source["config"]).replace(top_upscale=kind, top_upscales=1, top_kernel=kernel)
    model = build_model(cfg, seed=0)
    fresh = transplant(model, source["state_dict"])
    assert fresh and all(name.startswith("generator.ups.3.") for name in fresh)
    state = model.state_dict()
    kept = [k for k in state if k not in fresh and not k.startswith(("gaussian_conditional.", "entropy_bottleneck._"))]
    assert all(torch.equal(state[k], source["state_dict"][k].to(state[k].dtype)) for k in kept)


def _fresh_upscale_scores(make, seeds=range(4)) -> float:
    """Mean checkerboard score (evaluate.texture) of a freshly initialised 2x upscale of a half-size
    photo against the photo, after the least-squares affine map of each output channel onto the
    photo's (the fresh layer's random colour mix is not what the score is about)."""
    from skimage import data

    img = data.astronaut().astype(np.float64) / 255
    small = torch.nn.functional.avg_pool2d(torch.from_numpy(img).float().permute(2, 0, 1)[None], 2)
    scores = []
    for seed in seeds:
        torch.manual_seed(seed)
        with torch.no_grad():
            out = make()(small)[0].permute(1, 2, 0).double().numpy()
        rec = np.stack([np.polyval(np.polyfit(out[..., c].ravel(), img[..., c].ravel(), 1), out[..., c])
                        for c in range(3)], -1)
        scores.append(checkerboard_score(img * 255, rec * 255))
    return float(np.mean(scores))


def test_a_fresh_icnr_subpixel_upscale_has_no_checkerboard():
    icnr = _fresh_upscale_scores(lambda: SubpixelUp(3, 3, 3))
    resize = _fresh_upscale_scores(lambda: upscale(3, 3, "resize", 3))  # Odena's lattice-free reference

    def plain_subpixel():
        up = SubpixelUp(3, 3, 3)
        nn.init.kaiming_normal_(up.conv.weight)  # the same layer without ICNR
        return up

    deconv = _fresh_upscale_scores(lambda: upscale(3, 3, "deconv", 5))
    assert icnr <= 0.35 and abs(icnr - resize) <= 0.1
    assert deconv >= 5 * icnr
    assert _fresh_upscale_scores(plain_subpixel) >= 10 * icnr


def test_models_init_derives_a_top_upscale_model_from_lite_q1(tmp_path):
    import os
    import subprocess
    import sys

    def texpress(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "texpress.cli", *args], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200"})

    out = tmp_path / "sub.ckpt"
    proc = texpress("models", "init", "--preset", "lite", "--train-quant", "noise", "--from",
                    str(SHIPPED / "lite-q1.ckpt"), "--top-upscale", "subpixel", "--top-kernel", "3", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    payload = read_checkpoint(out)
    assert ModelConfig.from_dict(payload["config"]).upscale_of(3) == ("subpixel", 3)
    assert payload["meta"]["fresh_tensors"] == ["generator.ups.3.0.conv.bias", "generator.ups.3.0.conv.weight"]
    bad = texpress("models", "init", "--preset", "lite", "--top-upscale", "bicubic", "-o", str(tmp_path / "b.ckpt"))
    assert bad.returncode != 0 and "error: top_upscale must be one of" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr


def test_fitting_a_derived_top_upscale_restores_the_quality(tmp_path):
    """train.top_fit: a fresh resize top block on lite-q1 codes garbage; the L-BFGS fit on a few crops
    brings it near lite-q1's own PSNR on them, changing nothing below the top block."""
    from texpress.samples import sample_photos
    from texpress.train.top_fit import fit_top_upscale, photo_crops

    photos = sample_photos()
    if len(photos) < 4:
        pytest.skip("the sample photos of scikit-image / scikit-learn are missing")
    for p in photos:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    crops = photo_crops(tmp_path, 8, seed=1)
    assert crops.shape == (8, 3, 128, 128)
    source = read_checkpoint(SHIPPED / "lite-q1.ckpt")
    own = build_model(ModelConfig.from_dict(source["config"]))
    own.load_state_dict(source["state_dict"])
    own_psnr = fit_top_upscale(own, crops, iterations=1)["psnr_before"]
    model = build_model(ModelConfig.from_dict(source["config"]).replace(top_upscale="resize", top_upscales=1,
                                                                       top_kernel=3), seed=0)
    transplant(model, source["state_dict"])
    below = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("generator.ups.3.")}
    fit = fit_top_upscale(model, crops, iterations=60)
    assert fit["psnr_before"] < own_psnr - 10
    assert fit["psnr_after"] > own_psnr - 1.0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in below.items())
